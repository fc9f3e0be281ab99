#[closeout::test(leak = "os")]
fn t() {}

fn main() {}
