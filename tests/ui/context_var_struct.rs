use ctx_core::context_var;

#[context_var]
struct User;

fn main() {}
