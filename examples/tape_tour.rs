//! A tour of the tape: record a small two-task graph, print it, run backward passes from
//! both roots and one batched sweep, and export the graph as Graphviz DOT.
//!
//! `cargo run --release --example tape_tour [-- out.dot]`

use tapestry::autodiff::{Tape, Tensor};

fn main() {
    let tape = Tape::new();
    // Shared trunk: z = (x W + b)² ; two task heads on z.
    let x = tape.constant(Tensor::from_vec(&[2, 2], vec![1.0, 2.0, 3.0, 4.0]).expect("2x2"));
    let w = tape.leaf(Tensor::from_vec(&[2, 2], vec![0.5, -0.5, 0.25, 1.0]).expect("2x2"));
    let b = tape.leaf(Tensor::from(vec![0.1, -0.1]));
    let z = (x.matmul(w) + b).pow_scalar(2.0);
    let loss_a = z.mean_all();
    let loss_b = (z * 0.5).exp().sum_all().log();

    println!("The tape after the forward pass ({} nodes):\n", tape.len());
    print!("{}", tape.dump());

    let ga = tape.backward(loss_a);
    let gb = tape.backward(loss_b);
    println!("\ndL_a/dW = {:?}  ({} rules run)", ga.wrt(w).to_vec(), ga.rules_run());
    println!("dL_b/dW = {:?}  ({} rules run)", gb.wrt(w).to_vec(), gb.rules_run());

    let dz = tape.grad(loss_a, &[z]);
    println!("dL_a/dz = {:?}  ({} rules run: only the head)", dz.wrt(z).to_vec(), dz.rules_run());

    let both = tape.backward_batched(&[loss_a, loss_b]);
    println!(
        "batched: dL/dW for both tasks, stacked [T, 2, 2] = {:?}  ({} rules run)",
        both.stacked(w).to_vec(),
        both.rules_run()
    );

    let dot = tape.to_dot();
    match std::env::args().nth(1) {
        Some(path) => match std::fs::write(&path, &dot) {
            Ok(()) => println!("\nwrote {path} (render with `dot -Tsvg {path} -o tape.svg`)"),
            Err(e) => {
                eprintln!("could not write {path}: {e}");
                std::process::exit(2);
            }
        },
        None => println!("\nGraphviz DOT:\n{dot}"),
    }
}
