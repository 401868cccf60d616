use ctx_core::context_var;

#[context_var]
static NAME: &'a str;

fn main() {}
