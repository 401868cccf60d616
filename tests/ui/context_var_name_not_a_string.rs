use ctx_vars::context_var;

#[context_var(name = 3)]
static LEVEL: u32;

fn main() {
    let _ = LEVEL.get();
}
