use ctx_vars::with_context;

trait Handler {
    #[with_context]
    fn handle(&self);
}

fn main() {}
