use ctx_vars::with_context;

#[with_context]
struct Handler;

fn main() {}
