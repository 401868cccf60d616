use ctx_core::context_var;

fn main() {
    #[context_var]
    let user = String::new();
}
