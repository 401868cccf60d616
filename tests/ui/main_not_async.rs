#[ctx_tokio::main]
fn main() {}
