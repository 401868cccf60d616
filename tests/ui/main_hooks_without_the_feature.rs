// ctx-tokio is built here without its `hooks` feature.
#[ctx_tokio::main(hooks = "inherit")]
async fn main() {}
