use ctx_vars::context_var;

#[context_var]
static mut USER: String;

fn main() {
    // No cascade: the variable is still declared.
    let _ = USER.get();
}
