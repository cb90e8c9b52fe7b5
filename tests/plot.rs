//! Plots (rate–distortion, loss curves): labelled axes drawn with the bundled font, and no
//! panic on empty, single-point or non-finite data.
#[test]
fn plots_have_axes_labels_and_survive_degenerate_data() {
    use mergevq::eval::plot::LinePlot;
    let img = LinePlot::new("kept tokens K", "PSNR (dB)")
        .with("MergeVQ", vec![(16.0, 18.5), (25.0, 20.1), (36.0, 21.7), (64.0, 23.0)])
        .render(560, 360)
        .unwrap();
    assert_eq!(img.dimensions(), (560, 360));
    let dark = |x0: u32, x1: u32, y0: u32, y1: u32| {
        (x0..x1).flat_map(|x| (y0..y1).map(move |y| (x, y))).filter(|&(x, y)| img.get_pixel(x, y)[0] < 100).count()
    };
    assert!(dark(0, 30, 100, 260) > 30, "no y-axis label");
    assert!(dark(150, 450, 330, 360) > 30, "no x-axis label");
    for points in [vec![], vec![(1.0, 2.0)], vec![(f64::NAN, 1.0), (2.0, f64::INFINITY)], vec![(3.0, 5.0), (3.0, 5.0)]]
    {
        let p = LinePlot::new("x", "y").with("s", points).render(200, 120).unwrap();
        assert_eq!(p.dimensions(), (200, 120));
    }
}
