use ctx_core::context_var;

struct Borrowed<'a>(&'a str);

#[context_var]
static NAME: Option<Borrowed<'a>>;

fn main() {}
