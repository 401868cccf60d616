use ctx_core::with_context;

trait Handler {
    #[with_context]
    fn handle(&self);
}

fn main() {}
