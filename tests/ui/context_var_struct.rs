use ctx_vars::context_var;

#[context_var]
struct User;

fn main() {}
