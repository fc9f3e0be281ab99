#[closeout::test]
fn t(a: &closeout::Registry, b: &closeout::Registry) {}

fn main() {}
