//! The plots of a run, as PNG and SVG (plotters), mirroring the study's figures: accuracy
//! per round, pass@k against k (log2 axis) with round 1's pass@k on the improvement sets,
//! diversity per round over correct and incorrect responses, and accuracy per level with
//! the group disparity. Each point carries its 95% interval as an error bar; a series keeps
//! one colour in every panel and figure of a run (keyed by task and split, or by round),
//! and its second variant (sampled, incorrect, M1 on IS(t)) is dashed.

use crate::metric::Metric;
use std::path::Path;
use std::sync::Once;

use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;

use crate::measure::Measures;

/// One line of a panel.
pub(crate) struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    /// Each point's 95% interval, drawn as an error bar (None: no bar).
    pub intervals: Vec<Option<(f64, f64)>>,
    /// What fixes the colour: the same key has the same colour in every panel and figure of
    /// a run (`arith test`), whatever else the panel shows.
    pub key: String,
    /// Drawn dashed (the second variant of a key: sampled, incorrect).
    pub dashed: bool,
}

/// One chart.
pub(crate) struct Panel {
    pub title: String,
    pub x_desc: String,
    pub y_desc: String,
    /// x values are k of pass@k: drawn on a log2 axis.
    pub log2_x: bool,
    /// Integer x values (rounds, levels): ticks at integers only.
    pub integer_x: bool,
    /// Fixed 0..1 y axis (accuracies); otherwise fitted to the data.
    pub unit_y: bool,
    pub series: Vec<Series>,
}

/// A figure: panels side by side, written as `<stem>.png` and `<stem>.svg`.
pub(crate) struct Figure {
    pub stem: String,
    pub panels: Vec<Panel>,
}

const PANEL_SIZE: (u32, u32) = (560, 420);

/// Writes the figures of a run into `dir`; returns the file stems written. Figures with
/// nothing to draw (an improvement set needs two rounds) are skipped.
pub fn plot_run(dir: &Path, measures: &Measures) -> Result<Vec<String>> {
    let figures = run_figures(measures);
    let colours = colour_keys(&figures);
    for figure in &figures {
        render_with(dir, figure, &colours)?;
    }
    Ok(figures.into_iter().map(|f| f.stem).collect())
}

/// Every series key of the figures, in order of first appearance: a key's position is its
/// colour in all of them.
fn colour_keys(figures: &[Figure]) -> Vec<String> {
    let mut keys: Vec<String> = Vec::new();
    for series in figures
        .iter()
        .flat_map(|f| &f.panels)
        .flat_map(|p| &p.series)
    {
        if !keys.contains(&series.key) {
            keys.push(series.key.clone());
        }
    }
    keys
}

/// The colour of a series: its key's position among `keys`.
fn colour(series: &Series, keys: &[String]) -> RGBAColor {
    let index = keys.iter().position(|k| *k == series.key).unwrap_or(0);
    Palette99::pick(index).to_rgba()
}

/// Adds a point to the series with this label, starting the series if there is none (its
/// colour keyed by the label itself, drawn solid).
pub(crate) fn add_point(series: &mut Vec<Series>, label: String, point: (f64, f64)) {
    let key = label.clone();
    add_styled(series, (label, key, false), point, None);
}

/// Adds a point with its interval to the series (label, colour key, dashed).
pub(crate) fn add_styled(
    series: &mut Vec<Series>,
    (label, key, dashed): (String, String, bool),
    point: (f64, f64),
    interval: Option<(f64, f64)>,
) {
    match series.iter_mut().find(|s| s.label == label) {
        Some(s) => {
            s.points.push(point);
            s.intervals.push(interval);
        }
        None => series.push(Series {
            label,
            points: vec![point],
            intervals: vec![interval],
            key,
            dashed,
        }),
    }
}

/// A row's interval, when it has one.
fn interval_of(row: &crate::measure::MetricRow) -> Option<(f64, f64)> {
    row.ci_low.zip(row.ci_high)
}

/// The label of a (task, split) line.
fn task_label(task: &str, split: &str) -> String {
    format!("{task} {split}")
}

/// Values of one metric/subset as (round, value) per task split, with their intervals;
/// coloured by the task split, dashed when `dashed`.
fn per_round(
    measures: &Measures,
    (metric, subset): (Metric, &str),
    suffix: &str,
    dashed: bool,
) -> Vec<Series> {
    let mut series: Vec<Series> = Vec::new();
    for r in &measures.metrics {
        if r.metric != metric || r.subset != subset {
            continue;
        }
        let Some(value) = r.value else { continue };
        let key = task_label(&r.task, &r.split);
        let label = format!("{key}{suffix}");
        let point = (f64::from(r.round), value);
        add_styled(&mut series, (label, key, dashed), point, interval_of(r));
    }
    series
}

fn run_figures(m: &Measures) -> Vec<Figure> {
    let mut figures = Vec::new();
    let mut accuracy = per_round(m, (Metric::GreedyPass1, "all"), " greedy pass@1", false);
    for row in m
        .metrics
        .iter()
        .filter(|r| r.metric == Metric::PassAtK && r.subset == "all")
    {
        // The sampled pass@1 next to the greedy one shows how far greedy decoding is from
        // the average sample.
        if row.k == Some(1)
            && let Some(value) = row.value
        {
            let key = task_label(&row.task, &row.split);
            let label = format!("{key} sampled pass@1");
            let point = (f64::from(row.round), value);
            add_styled(&mut accuracy, (label, key, true), point, interval_of(row));
        }
    }
    figures.push(Figure {
        stem: "accuracy".into(),
        panels: vec![Panel {
            title: "Accuracy per round".into(),
            x_desc: "round".into(),
            y_desc: "pass@1".into(),
            log2_x: false,
            integer_x: true,
            unit_y: true,
            series: accuracy,
        }],
    });

    // pass@k against k for every round, and round 1's pass@k on IS(t).
    let mut pass_k: Vec<Series> = Vec::new();
    for row in m
        .metrics
        .iter()
        .filter(|r| r.metric == Metric::PassAtK && r.subset == "all")
    {
        let (Some(k), Some(value)) = (row.k, row.value) else {
            continue;
        };
        let label = format!("{} round {}", task_label(&row.task, &row.split), row.round);
        let key = label.clone();
        add_styled(
            &mut pass_k,
            (label, key, false),
            (k as f64, value),
            interval_of(row),
        );
    }
    let mut panels = vec![Panel {
        title: "pass@k of the samples".into(),
        x_desc: "k (log2)".into(),
        y_desc: "pass@k".into(),
        log2_x: true,
        integer_x: false,
        unit_y: true,
        series: pass_k,
    }];
    let mut on_is: Vec<Series> = Vec::new();
    for row in m
        .metrics
        .iter()
        .filter(|r| r.metric == Metric::ImprovementSetRound1PassAtK)
    {
        let (Some(k), Some(value)) = (row.k, row.value) else {
            continue;
        };
        let size = m
            .improvement
            .iter()
            .find(|i| i.task == row.task && i.split == row.split && i.round == row.round)
            .map_or(0, |i| i.is_size);
        let key = format!("{} round {}", task_label(&row.task, &row.split), row.round);
        let label = format!(
            "{} IS({}) |IS|={size}",
            task_label(&row.task, &row.split),
            row.round
        );
        add_styled(
            &mut on_is,
            (label, key, true),
            (k as f64, value),
            interval_of(row),
        );
    }
    if !on_is.is_empty() {
        panels.push(Panel {
            title: "Round 1's pass@k on the improvement set IS(t)".into(),
            x_desc: "k (log2)".into(),
            y_desc: "pass@k of round 1".into(),
            log2_x: true,
            integer_x: false,
            unit_y: true,
            series: on_is,
        });
    }
    figures.push(Figure {
        stem: "pass_at_k".into(),
        panels,
    });

    let mut diversity = Vec::new();
    for (metric, title) in [
        (Metric::DistinctN, "Distinct-N (syntactic)"),
        (Metric::SbertDiversity, "SentenceBERT diversity (semantic)"),
        (Metric::DistinctEquations, "Distinct Equations (logical)"),
    ] {
        let mut series = per_round(m, (metric, "correct"), " correct", false);
        series.extend(per_round(m, (metric, "incorrect"), " incorrect", true));
        if !series.is_empty() {
            diversity.push(Panel {
                title: title.into(),
                x_desc: "round".into(),
                y_desc: "diversity".into(),
                log2_x: false,
                integer_x: true,
                unit_y: false,
                series,
            });
        }
    }
    if !diversity.is_empty() {
        figures.push(Figure {
            stem: "diversity".into(),
            panels: diversity,
        });
    }

    // Accuracy per level (one line per round) and the group disparity per round.
    let mut levels: Vec<Series> = Vec::new();
    for row in m.metrics.iter().filter(|r| r.metric == Metric::GreedyPass1) {
        let Some(level) = row
            .subset
            .strip_prefix("level=")
            .and_then(|l| l.parse::<f64>().ok())
        else {
            continue;
        };
        let Some(value) = row.value else { continue };
        let label = format!("{} round {}", task_label(&row.task, &row.split), row.round);
        let key = label.clone();
        add_styled(
            &mut levels,
            (label, key, false),
            (level, value),
            interval_of(row),
        );
    }
    if !levels.is_empty() {
        let mut disparity: Vec<Series> = Vec::new();
        for row in m
            .metrics
            .iter()
            .filter(|r| r.metric == Metric::GroupDisparity)
        {
            let Some(value) = row.value else { continue };
            let key = task_label(&row.task, &row.split);
            let label = format!("{key} GD {}", row.subset);
            let point = (f64::from(row.round), value);
            add_styled(&mut disparity, (label, key, false), point, interval_of(row));
        }
        figures.push(Figure {
            stem: "levels".into(),
            panels: vec![
                Panel {
                    title: "Greedy accuracy per level".into(),
                    x_desc: "level".into(),
                    y_desc: "pass@1".into(),
                    log2_x: false,
                    integer_x: true,
                    unit_y: true,
                    series: levels,
                },
                Panel {
                    title: "Group disparity (lowest vs highest level)".into(),
                    x_desc: "round".into(),
                    y_desc: "(p_low - p_high) / p_low".into(),
                    log2_x: false,
                    integer_x: true,
                    unit_y: false,
                    series: disparity,
                },
            ],
        });
    }
    figures
}

static FONT: Once = Once::new();

/// Registers the embedded DejaVu Sans as plotters' sans-serif (the PNG backend draws text
/// with it; machines need no installed fonts).
fn register_font() {
    FONT.call_once(|| {
        if plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular())
            .is_err()
        {
            tracing::warn!("the embedded font could not be registered; PNG text may be missing");
        }
    });
}

pub(crate) fn render(dir: &Path, figure: &Figure) -> Result<()> {
    render_with(dir, figure, &colour_keys(std::slice::from_ref(figure)))
}

/// Renders a figure with the colours of `keys` (see [`colour_keys`]).
fn render_with(dir: &Path, figure: &Figure, keys: &[String]) -> Result<()> {
    register_font();
    let size = (
        PANEL_SIZE.0 * figure.panels.len().max(1) as u32,
        PANEL_SIZE.1 + legend_height(figure),
    );
    let png = dir.join(format!("{}.png", figure.stem));
    let svg = dir.join(format!("{}.svg", figure.stem));
    {
        let root = BitMapBackend::new(&png, size).into_drawing_area();
        draw_figure(&root, figure, keys)?;
    }
    {
        let root = SVGBackend::new(&svg, size).into_drawing_area();
        draw_figure(&root, figure, keys)?;
    }
    Ok(())
}

/// Height of the legend strip under the charts: one line per series of the fullest panel.
fn legend_height(figure: &Figure) -> u32 {
    let lines = figure
        .panels
        .iter()
        .map(|p| p.series.len())
        .max()
        .unwrap_or(0) as u32;
    if lines == 0 {
        0
    } else {
        LEGEND_LINE * lines + 12
    }
}

const LEGEND_LINE: u32 = 18;

fn plot_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing a plot: {e:?}")
}

fn draw_figure<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    figure: &Figure,
    keys: &[String],
) -> Result<()> {
    root.fill(&WHITE).map_err(plot_error)?;
    let areas = root.split_evenly((1, figure.panels.len().max(1)));
    for (area, panel) in areas.iter().zip(&figure.panels) {
        // The legend goes in a strip under the chart, where it never hides a point.
        let (chart, legend) = area.split_vertically(PANEL_SIZE.1);
        draw_panel(&chart, panel, keys)?;
        draw_legend(&legend, panel, keys)?;
    }
    root.present().map_err(plot_error)
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    keys: &[String],
) -> Result<()> {
    let xs = || {
        panel
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
    };
    // Interval ends count too, so that error bars stay inside the axis.
    let ys = || {
        panel.series.iter().flat_map(|s| {
            let ends = s.intervals.iter().flatten().flat_map(|(lo, hi)| [*lo, *hi]);
            s.points.iter().map(|p| p.1).chain(ends)
        })
    };
    let to_x = |x: f64| if panel.log2_x { x.max(1.0).log2() } else { x };
    let (mut x0, mut x1) = xs()
        .map(to_x)
        .fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
    if x0 > x1 {
        (x0, x1) = (0.0, 1.0);
    }
    // A margin either side, so that one round or one k still gets an axis.
    let pad = ((x1 - x0) * 0.05).max(0.5);
    let (y0, y1) = if panel.unit_y {
        (0.0, 1.0)
    } else {
        let (lo, hi) = ys().fold((f64::MAX, f64::MIN), |(a, b), y| (a.min(y), b.max(y)));
        if lo > hi {
            (0.0, 1.0)
        } else {
            {
                let span = (hi.max(0.0) - lo.min(0.0)).max(1e-6);
                (
                    lo.min(0.0) - if lo < 0.0 { span * 0.08 } else { 0.0 },
                    hi.max(0.0) + span * 0.12,
                )
            }
        }
    };
    let mut chart = ChartBuilder::on(area)
        .caption(&panel.title, ("sans-serif", 17))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d((x0 - pad)..(x1 + pad), y0..(y1 + (y1 - y0) * 0.02))
        .map_err(plot_error)?;
    let log2 = panel.log2_x;
    let integer = panel.integer_x;
    let x_format = move |x: &f64| -> String {
        if log2 {
            let k = 2f64.powf(*x);
            if (k - k.round()).abs() < 1e-6 {
                format!("{}", k.round())
            } else {
                String::new()
            }
        } else if integer {
            if (x - x.round()).abs() < 1e-6 {
                format!("{}", x.round())
            } else {
                String::new()
            }
        } else {
            format!("{x:.2}")
        }
    };
    let span = (x1 + pad) - (x0 - pad);
    chart
        .configure_mesh()
        .x_desc(&panel.x_desc)
        .y_desc(&panel.y_desc)
        .x_labels(if log2 || integer {
            (span.ceil() as usize * 4).clamp(2, 40)
        } else {
            8
        })
        .x_label_formatter(&x_format)
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(plot_error)?;
    let cap = (x1 - x0 + 2.0 * pad) * 0.008;
    for series in &panel.series {
        let color = colour(series, keys);
        let mut points: Vec<(f64, f64)> =
            series.points.iter().map(|(x, y)| (to_x(*x), *y)).collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let style = color.stroke_width(2);
        match series.dashed {
            true => chart.draw_series(DashedLineSeries::new(points.clone(), 6, 4, style)),
            false => chart.draw_series(LineSeries::new(points.clone(), style)),
        }
        .map_err(plot_error)?;
        chart
            .draw_series(points.iter().map(|p| Circle::new(*p, 4, color.filled())))
            .map_err(plot_error)?;
        // Error bars: the 95% interval of each point, with short caps.
        let bars = series
            .points
            .iter()
            .zip(&series.intervals)
            .filter_map(|((x, _), i)| i.map(|(lo, hi)| (to_x(*x), lo, hi)));
        for (x, lo, hi) in bars {
            let thin = color.mix(0.7).stroke_width(1);
            for path in [
                vec![(x, lo), (x, hi)],
                vec![(x - cap, lo), (x + cap, lo)],
                vec![(x - cap, hi), (x + cap, hi)],
            ] {
                chart
                    .draw_series(std::iter::once(PathElement::new(path, thin)))
                    .map_err(plot_error)?;
            }
        }
    }
    Ok(())
}

fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    keys: &[String],
) -> Result<()> {
    for (i, series) in panel.series.iter().enumerate() {
        let color = colour(series, keys);
        let y = 6 + (i as u32 * LEGEND_LINE) as i32 + LEGEND_LINE as i32 / 2;
        let segments: &[(i32, i32)] = match series.dashed {
            true => &[(70, 76), (79, 85), (88, 92)],
            false => &[(70, 92)],
        };
        for (from, to) in segments {
            area.draw(&PathElement::new(
                vec![(*from, y), (*to, y)],
                color.stroke_width(3),
            ))
            .map_err(plot_error)?;
        }
        area.draw(&Text::new(
            series.label.clone(),
            (100, y - 7),
            ("sans-serif", 13).into_font(),
        ))
        .map_err(plot_error)?;
    }
    Ok(())
}
