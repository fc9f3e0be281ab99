#[closeout::test]
fn t<T>() {}

fn main() {}
