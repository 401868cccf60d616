use ctx_core::context_var;

#[context_var]
fn user() -> String {
    String::new()
}

fn main() {}
