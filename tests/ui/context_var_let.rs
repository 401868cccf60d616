use ctx_vars::context_var;

fn main() {
    #[context_var]
    let user = String::new();
}
