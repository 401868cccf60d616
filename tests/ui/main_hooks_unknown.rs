#[ctx_tokio::main(hooks = "always")]
async fn main() {}
