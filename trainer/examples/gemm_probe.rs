use std::time::Instant;
fn main() {
    for (m, k, n) in [
        (1024usize, 576usize, 1536usize),
        (1024, 1536, 576),
        (1024, 576, 49152),
        (576, 1024, 1536),
    ] {
        let a = vec![0.5f32; m * k];
        let b = vec![0.25f32; k * n];
        let mut c = vec![0f32; m * n];
        let run = |c: &mut Vec<f32>| unsafe {
            gemm::gemm(
                m,
                n,
                k,
                c.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.as_ptr(),
                1,
                k as isize,
                b.as_ptr(),
                1,
                n as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::Rayon(2),
            );
        };
        for _ in 0..3 {
            run(&mut c);
        }
        let t = Instant::now();
        let r = 10;
        for _ in 0..r {
            run(&mut c);
        }
        let dt = t.elapsed().as_secs_f64() / r as f64;
        println!(
            "{m} {k} {n} {:.0} GFLOP/s",
            2.0 * (m * k * n) as f64 / dt / 1e9
        );
    }
}
