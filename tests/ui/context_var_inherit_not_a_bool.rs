use ctx_core::context_var;

#[context_var(inherit = "no")]
static TRANSACTION: u64;

fn main() {
    let _ = TRANSACTION.get();
}
