#[closeout::test]
fn t() -> u32 {
    7
}

fn main() {}
