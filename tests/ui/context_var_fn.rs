use ctx_vars::context_var;

#[context_var]
fn user() -> String {
    String::new()
}

fn main() {}
