#[closeout::test(leaks = "sometimes")]
fn t() {}

fn main() {}
