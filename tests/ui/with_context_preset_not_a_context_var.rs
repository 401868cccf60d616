use ctx_vars::with_context;

static LIMIT: u32 = 10;

#[with_context(LIMIT = 3)]
fn handle() {}

fn main() {
    handle();
}
