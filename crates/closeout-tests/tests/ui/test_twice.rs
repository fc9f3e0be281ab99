#[closeout::test]
#[test]
fn t() {}

fn main() {}
