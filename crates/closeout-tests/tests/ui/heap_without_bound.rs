#[global_allocator]
static HEAP: closeout::alloc::Counting = closeout::alloc::Counting::system();

#[closeout::test(heap = HEAP)]
fn t() {}

fn main() {}
