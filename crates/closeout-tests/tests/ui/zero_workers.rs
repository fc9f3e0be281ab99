#[closeout::test(flavor = "multi_thread", worker_threads = 0)]
async fn t() {}

fn main() {}
