use ctx_vars::context_var;

#[context_var]
static NAME: &'a str;

fn main() {}
