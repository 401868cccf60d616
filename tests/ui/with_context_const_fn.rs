use ctx_vars::with_context;

#[with_context]
const fn answer() -> u32 {
    42
}

fn main() {
    let _ = answer();
}
