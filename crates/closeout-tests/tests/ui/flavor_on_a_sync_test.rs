#[closeout::test(flavor = "multi_thread")]
fn t() {}

fn main() {}
