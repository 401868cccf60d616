use ctx_vars::context_var;

struct Borrowed<'a>(&'a str);

#[context_var]
static NAME: Option<Borrowed<'a>>;

fn main() {}
