#[closeout::test]
async fn t(registry: &closeout::Registry) {}

fn main() {}
