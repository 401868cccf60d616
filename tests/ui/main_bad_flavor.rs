#[ctx_tokio::main(flavor = "multi-thread")]
async fn main() {}
