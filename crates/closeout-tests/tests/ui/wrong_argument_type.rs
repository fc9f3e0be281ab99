#[closeout::test]
fn t(registry: u32) {}

fn main() {}
