use ctx_vars::context_var;

#[context_var(inherit = "no")]
static TRANSACTION: u64;

fn main() {
    let _ = TRANSACTION.get();
}
