use ctx_vars::{context_var, with_context};

#[context_var]
static USER: String;

#[with_context(USER)]
fn handle() {}

fn main() {
    handle();
}
