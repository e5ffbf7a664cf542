//! The recall–QPS plot, drawn like ann-benchmarks': recall on x, queries per
//! second (one thread) on a logarithmic y axis, one line per system.

use std::path::Path;

use plotters::prelude::*;

use crate::{AnnReport, BenchError, Result};

/// A named curve of (recall, QPS) points.
#[derive(Debug, Clone)]
pub struct Curve {
    /// Legend label.
    pub label: String,
    /// Points, in sweep order.
    pub points: Vec<(f64, f64)>,
}

impl Curve {
    /// imgsim's single-thread curve from a report.
    pub fn from_report(label: &str, r: &AnnReport) -> Curve {
        Curve {
            label: label.to_string(),
            points: r
                .runs
                .iter()
                .map(|x| (x.recall_at_10, x.qps_single_thread))
                .collect(),
        }
    }
}

const COLOURS: [RGBColor; 8] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Draws the curves to an SVG file.
pub fn plot_svg(title: &str, curves: &[Curve], path: &Path) -> Result<()> {
    let all: Vec<(f64, f64)> = curves
        .iter()
        .flat_map(|c| c.points.iter().copied())
        .collect();
    if all.is_empty() {
        return Err(BenchError::Plot("nothing to plot".into()));
    }
    let err = |e: &dyn std::fmt::Display| BenchError::Plot(e.to_string());
    let rmin = all.iter().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let x0 = ((rmin * 20.0).floor() / 20.0).clamp(0.0, 0.95);
    let qmin = all
        .iter()
        .map(|p| p.1)
        .fold(f64::INFINITY, f64::min)
        .max(1.0);
    let qmax = all.iter().map(|p| p.1).fold(0.0, f64::max).max(qmin * 1.1);
    let y0 = 10f64.powf(qmin.log10().floor());
    let y1 = 10f64.powf(qmax.log10().ceil());
    crate::create_parent(path)?;
    let mut svg = String::new();
    let root = SVGBackend::with_string(&mut svg, (900, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..1.0f64, (y0..y1).log_scale())
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("Recall@10")
        .y_desc("Queries per second (1 thread, log scale)")
        .y_label_formatter(&|y| format!("{y:.0}"))
        .x_label_formatter(&|x| format!("{x:.2}"))
        .draw()
        .map_err(|e| err(&e))?;
    for (i, c) in curves.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let mut pts = c.points.clone();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(pts.clone(), colour.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(c.label.clone())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
            });
        chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 3, colour.filled())))
            .map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    drop(chart);
    drop(root);
    crate::write_file(path, svg.as_bytes())
}

/// Draws a training loss curve (epoch on x, loss on a logarithmic y axis)
/// to an SVG file.
pub fn plot_loss_svg(title: &str, points: &[(f64, f64)], path: &Path) -> Result<()> {
    let pts: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|p| p.1 > 0.0 && p.1.is_finite())
        .collect();
    if pts.is_empty() {
        return Err(BenchError::Plot("no loss values to plot".into()));
    }
    let err = |e: &dyn std::fmt::Display| BenchError::Plot(e.to_string());
    let xmax = pts.iter().map(|p| p.0).fold(1.0, f64::max);
    let lmin = pts.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let lmax = pts.iter().map(|p| p.1).fold(0.0, f64::max);
    crate::create_parent(path)?;
    let mut svg = String::new();
    let root = SVGBackend::with_string(&mut svg, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..xmax, ((lmin * 0.9)..(lmax * 1.1)).log_scale())
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("epoch")
        .y_desc("training loss (MSE, log scale)")
        .y_label_formatter(&|y| format!("{y:.4}"))
        .draw()
        .map_err(|e| err(&e))?;
    chart
        .draw_series(LineSeries::new(pts.clone(), COLOURS[0].stroke_width(2)))
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    drop(chart);
    drop(root);
    crate::write_file(path, svg.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_an_svg_with_the_labels() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("plot.svg");
        let curves = vec![
            Curve {
                label: "imgsim".into(),
                points: vec![(0.9, 20000.0), (0.99, 5000.0)],
            },
            Curve {
                label: "hnswlib".into(),
                points: vec![(0.92, 18000.0), (0.995, 4000.0)],
            },
        ];
        plot_svg("test", &curves, &p).unwrap();
        let svg = std::fs::read_to_string(&p).unwrap();
        assert!(svg.contains("<svg") && svg.contains("imgsim") && svg.contains("hnswlib"));
        assert!(plot_svg("empty", &[], &p).is_err());
        plot_loss_svg("loss", &[(0.5, 0.1), (1.0, 0.05)], &p).unwrap();
        assert!(std::fs::read_to_string(&p).unwrap().contains("epoch"));
        assert!(plot_loss_svg("loss", &[], &p).is_err());
    }
}
