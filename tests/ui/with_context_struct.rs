use ctx_core::with_context;

#[with_context]
struct Handler;

fn main() {}
