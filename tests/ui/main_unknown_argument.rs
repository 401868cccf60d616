#[ctx_tokio::main(threads = 2)]
async fn main() {}
