use ctx_vars::context_var;

#[context_var]
const LEVEL: u32 = 3;

fn main() {}
