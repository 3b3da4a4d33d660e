//! The selected run's model as a layered graph: a node per layer with its output shape,
//! parameters and multiply-accumulates; residual blocks drawn with their shortcut and the
//! add, Inception modules with their parallel branches and the concatenation; blocks and
//! modules collapse to one node. Pan by dragging, zoom with the wheel. Clicking a node
//! shows its numbers, its latest gradient norm and its feature maps.

use std::collections::HashSet;

use anyhow::Result;
use egui::{Align2, Color32, FontId, Pos2, Rect, Sense, Stroke, Vec2, pos2, vec2};

use crate::app::lab::Lab;
use crate::app::pictures::Pictures;
use crate::app::views::FeaturesView;
use crate::core::study::{blocks, inception_modules};
use crate::core::summary::{Layer, Summary, summarise, thousands};

const W: f32 = 230.0;
const H: f32 = 50.0;
const GAP: f32 = 22.0;
const PAD: f32 = 14.0;
const TITLE: f32 = 20.0;

/// The drawing's structure, built from the summary and the model's blocks and modules.
#[derive(Clone, Debug)]
enum Node {
    /// A layer (index into the summary).
    Layer(usize),
    /// A group run in sequence (a stage, `features`).
    Seq(usize, Vec<Node>),
    /// A residual block: its branch, its projection shortcut (None: identity), the add.
    Residual(usize, Vec<Node>, Option<Vec<Node>>),
    /// A plain block (the residual net's twin without shortcuts).
    Plain(usize, Vec<Node>),
    /// An Inception module: parallel branches, concatenated.
    Parallel(usize, Vec<Vec<Node>>),
}

/// What the graph of a model shows, counted: for tests and the header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outline {
    /// Layer nodes.
    pub layers: usize,
    /// Residual blocks (a shortcut and an add each).
    pub residual_adds: usize,
    /// Of those, the ones with a projection shortcut.
    pub projections: usize,
    /// Plain blocks (no shortcut).
    pub plain_blocks: usize,
    /// Inception modules (a concatenation each).
    pub concats: usize,
}

fn count(nodes: &[Node], o: &mut Outline) {
    for n in nodes {
        match n {
            Node::Layer(_) => o.layers += 1,
            Node::Seq(_, k) => count(k, o),
            Node::Plain(_, k) => {
                o.plain_blocks += 1;
                count(k, o);
            }
            Node::Residual(_, b, s) => {
                o.residual_adds += 1;
                count(b, o);
                if let Some(s) = s {
                    o.projections += 1;
                    count(s, o);
                }
            }
            Node::Parallel(_, bs) => {
                o.concats += 1;
                for b in bs {
                    count(b, o);
                }
            }
        }
    }
}

/// Summarises `net` (model `name`, for `input` images) and counts what its graph draws.
pub fn outline(
    gpu: &gpu_nn::Gpu,
    net: &dyn gpu_nn::nn::Module,
    name: &str,
    input: [usize; 3],
) -> Result<(Summary, Outline)> {
    let summary = summarise(gpu, net, input)?;
    let nodes = structure(&summary, net, name);
    let mut o = Outline::default();
    count(&nodes, &mut o);
    Ok((summary, o))
}

fn structure(summary: &Summary, net: &dyn gpu_nn::nn::Module, name: &str) -> Vec<Node> {
    let bl: HashSet<String> = blocks(net).into_iter().map(|b| b.path).collect();
    let md: HashSet<String> = inception_modules(net).into_iter().map(|m| m.0).collect();
    build(summary, !name.ends_with("-plain"), &bl, &md)
}

/// The model's structure and numbers for one run.
struct Model {
    run: u64,
    summary: Summary,
    nodes: Vec<Node>,
}

/// The view's state.
#[derive(Default)]
pub struct GraphView {
    model: Option<Model>,
    /// Groups drawn open (by path); the rest collapse to one node.
    pub expanded: HashSet<String>,
    /// The clicked layer.
    pub selected: Option<String>,
    /// The run shown and what its graph draws.
    pub outline: Option<(u64, Outline)>,
    scene: Option<Rect>,
}

fn build(
    s: &Summary,
    residual: bool,
    blocks: &HashSet<String>,
    modules: &HashSet<String>,
) -> Vec<Node> {
    fn children(s: &Summary, path: &str) -> Vec<usize> {
        let prefix = format!("{path}.");
        let depth = path.matches('.').count() + 1;
        s.layers
            .iter()
            .enumerate()
            .filter(|(_, l)| l.depth == depth && l.path.starts_with(&prefix))
            .map(|(i, _)| i)
            .collect()
    }
    fn node(
        s: &Summary,
        i: usize,
        residual: bool,
        blocks: &HashSet<String>,
        modules: &HashSet<String>,
    ) -> Node {
        let l = &s.layers[i];
        if l.kind != "group" {
            return Node::Layer(i);
        }
        let kids = children(s, &l.path);
        let seq = |ids: &[usize]| -> Vec<Node> {
            ids.iter()
                .map(|&k| node(s, k, residual, blocks, modules))
                .collect()
        };
        if blocks.contains(&l.path) {
            let (short, branch): (Vec<usize>, Vec<usize>) = kids
                .iter()
                .partition(|&&k| s.layers[k].path.ends_with(".downsample"));
            if !residual {
                return Node::Plain(i, seq(&branch));
            }
            let shortcut = short
                .first()
                .map(|&d| match node(s, d, residual, blocks, modules) {
                    Node::Seq(_, inner) => inner,
                    other => vec![other],
                });
            return Node::Residual(i, seq(&branch), shortcut);
        }
        if modules.contains(&l.path) {
            let branches = kids
                .iter()
                .map(|&k| match node(s, k, residual, blocks, modules) {
                    Node::Seq(_, inner) => inner,
                    other => vec![other],
                })
                .collect();
            return Node::Parallel(i, branches);
        }
        Node::Seq(i, seq(&kids))
    }
    s.layers
        .iter()
        .enumerate()
        .filter(|(_, l)| l.depth == 0)
        .map(|(i, _)| node(s, i, residual, blocks, modules))
        .collect()
}

fn index(n: &Node) -> usize {
    match n {
        Node::Layer(i)
        | Node::Seq(i, _)
        | Node::Residual(i, ..)
        | Node::Plain(i, _)
        | Node::Parallel(i, _) => *i,
    }
}

fn macs(n: u64) -> String {
    if n >= 1_000_000_000 {
        format!("{:.2} G", n as f64 / 1e9)
    } else if n >= 1_000_000 {
        format!("{:.1} M", n as f64 / 1e6)
    } else if n >= 1000 {
        format!("{:.1} k", n as f64 / 1e3)
    } else {
        n.to_string()
    }
}

fn shape(v: &[usize]) -> String {
    v.iter().map(usize::to_string).collect::<Vec<_>>().join("x")
}

/// Where each drawn thing goes: computed sizes, then painted at an origin.
struct Painter<'a> {
    s: &'a Summary,
    expanded: &'a HashSet<String>,
    clicks: Vec<(Rect, String, bool)>,
    selected: Option<&'a str>,
}

impl Painter<'_> {
    fn open(&self, i: usize) -> bool {
        self.expanded.contains(&self.s.layers[i].path)
    }

    fn size(&self, n: &Node) -> Vec2 {
        match n {
            Node::Layer(_) => vec2(W, H),
            _ if !self.open(index(n)) => vec2(W, H),
            Node::Seq(_, kids) | Node::Plain(_, kids) => {
                let s = self.column(kids);
                vec2(s.x + 2.0 * PAD, s.y + 2.0 * PAD + TITLE)
            }
            Node::Residual(_, branch, short) => {
                let b = self.column(branch);
                let sc = short.as_ref().map_or(vec2(40.0, 0.0), |c| self.column(c));
                vec2(
                    b.x + sc.x + 3.0 * PAD,
                    b.y.max(sc.y) + 2.0 * PAD + TITLE + GAP + 24.0,
                )
            }
            Node::Parallel(_, branches) => {
                let cols: Vec<Vec2> = branches.iter().map(|b| self.column(b)).collect();
                let w: f32 =
                    cols.iter().map(|c| c.x).sum::<f32>() + PAD * (cols.len() as f32 + 1.0);
                let h = cols.iter().map(|c| c.y).fold(0.0, f32::max);
                vec2(w.max(W + 2.0 * PAD), h + 2.0 * PAD + TITLE + GAP + 24.0)
            }
        }
    }

    fn column(&self, kids: &[Node]) -> Vec2 {
        let sizes: Vec<Vec2> = kids.iter().map(|k| self.size(k)).collect();
        let w = sizes.iter().map(|s| s.x).fold(0.0, f32::max);
        let h =
            sizes.iter().map(|s| s.y).sum::<f32>() + GAP * (sizes.len().saturating_sub(1)) as f32;
        vec2(w, h)
    }

    /// Paints `n` with its top-left at `at`; returns (top centre, bottom centre).
    fn paint(&mut self, p: &egui::Painter, n: &Node, at: Pos2) -> (Pos2, Pos2) {
        let size = self.size(n);
        let rect = Rect::from_min_size(at, size);
        let i = index(n);
        let l = &self.s.layers[i];
        let group = !matches!(n, Node::Layer(_));
        if !group || !self.open(i) {
            self.box_node(p, rect, l, n);
            self.clicks.push((rect, l.path.clone(), group));
            return (rect.center_top(), rect.center_bottom());
        }
        // An open group: its frame, its title (click to collapse), its contents.
        p.rect_stroke(
            rect,
            6.0,
            Stroke::new(1.0, Color32::from_gray(90)),
            egui::StrokeKind::Inside,
        );
        let title = Rect::from_min_size(at + vec2(PAD, 4.0), vec2(size.x - 2.0 * PAD, TITLE));
        p.text(
            title.left_center(),
            Align2::LEFT_CENTER,
            format!(
                "[-] {} ({}, {} params)",
                l.path,
                kind_of(n),
                group_params(l)
            ),
            FontId::proportional(12.0),
            Color32::from_gray(200),
        );
        self.clicks.push((title, l.path.clone(), true));
        let inner = at + vec2(PAD, PAD + TITLE);
        match n {
            Node::Seq(_, kids) | Node::Plain(_, kids) => {
                let w = self.column(kids).x;
                let (top, bottom) = self.stack(p, kids, inner, w);
                (
                    top.unwrap_or(rect.center_top()),
                    bottom.unwrap_or(rect.center_bottom()),
                )
            }
            Node::Residual(_, branch, short) => {
                let bw = self.column(branch).x;
                let (top, bottom) = self.stack(p, branch, inner, bw);
                let add = pos2(inner.x + bw / 2.0, rect.bottom() - PAD - 12.0);
                let entry = top.unwrap_or(add);
                let col = Color32::from_rgb(90, 170, 240);
                // The shortcut: from the block's input around the branch to the add.
                let sx = inner.x + bw + PAD;
                let (s_top, s_bottom) = match short {
                    Some(c) => {
                        let sw = self.column(c).x;
                        let (t, b) = self.stack(p, c, pos2(sx, inner.y), sw);
                        (t.unwrap_or(entry), b.unwrap_or(entry))
                    }
                    None => {
                        let x = sx + 20.0;
                        let a = pos2(x, inner.y);
                        let b = pos2(x, add.y);
                        p.line_segment([a, b], Stroke::new(2.0, col));
                        p.text(
                            pos2(x + 4.0, (a.y + b.y) / 2.0),
                            Align2::LEFT_CENTER,
                            "identity",
                            FontId::proportional(11.0),
                            col,
                        );
                        (a, b)
                    }
                };
                let fork = pos2(entry.x, inner.y - 6.0);
                p.line_segment([fork, pos2(s_top.x, fork.y)], Stroke::new(2.0, col));
                p.line_segment([pos2(s_top.x, fork.y), s_top], Stroke::new(2.0, col));
                p.line_segment([s_bottom, pos2(s_bottom.x, add.y)], Stroke::new(2.0, col));
                p.line_segment([pos2(s_bottom.x, add.y), add], Stroke::new(2.0, col));
                if let Some(b) = bottom {
                    arrow(p, b, add - vec2(0.0, 11.0));
                }
                p.circle(add, 11.0, Color32::from_gray(40), Stroke::new(2.0, col));
                p.text(
                    add,
                    Align2::CENTER_CENTER,
                    "+",
                    FontId::proportional(16.0),
                    col,
                );
                p.text(
                    add + vec2(16.0, 0.0),
                    Align2::LEFT_CENTER,
                    "then ReLU",
                    FontId::proportional(11.0),
                    Color32::from_gray(170),
                );
                (fork, add + vec2(0.0, 11.0))
            }
            Node::Parallel(_, branches) => {
                let mut x = inner.x;
                let cat = Rect::from_center_size(
                    pos2(rect.center().x, rect.bottom() - PAD - 12.0),
                    vec2(90.0, 22.0),
                );
                let fork = pos2(rect.center().x, inner.y - 6.0);
                let col = Color32::from_rgb(240, 170, 80);
                for b in branches {
                    let w = self.column(b).x;
                    let (t, bt) = self.stack(p, b, pos2(x, inner.y), w);
                    if let Some(t) = t {
                        p.line_segment([fork, t], Stroke::new(1.5, col));
                    }
                    if let Some(bt) = bt {
                        arrow(p, bt, cat.center_top());
                    }
                    x += w + PAD;
                }
                p.rect_filled(cat, 4.0, Color32::from_rgb(70, 50, 20));
                p.text(
                    cat.center(),
                    Align2::CENTER_CENTER,
                    "concat",
                    FontId::proportional(12.0),
                    col,
                );
                (fork, cat.center_bottom())
            }
            Node::Layer(_) => (rect.center_top(), rect.center_bottom()),
        }
    }

    /// Paints `kids` top to bottom, centred in a column `width` wide, with arrows.
    fn stack(
        &mut self,
        p: &egui::Painter,
        kids: &[Node],
        at: Pos2,
        width: f32,
    ) -> (Option<Pos2>, Option<Pos2>) {
        let (mut top, mut last): (Option<Pos2>, Option<Pos2>) = (None, None);
        let mut y = at.y;
        for k in kids {
            let s = self.size(k);
            let (t, b) = self.paint(p, k, pos2(at.x + (width - s.x) / 2.0, y));
            if let Some(prev) = last {
                arrow(p, prev, t);
            }
            top.get_or_insert(t);
            last = Some(b);
            y += s.y + GAP;
        }
        (top, last)
    }

    fn box_node(&self, p: &egui::Painter, rect: Rect, l: &Layer, n: &Node) {
        let fill = match n {
            Node::Residual(..) => Color32::from_rgb(25, 55, 85),
            Node::Parallel(..) => Color32::from_rgb(70, 50, 20),
            Node::Layer(_) if l.kind.starts_with("Conv") => Color32::from_rgb(35, 60, 45),
            Node::Layer(_) if l.kind == "Linear" => Color32::from_rgb(60, 40, 70),
            _ => Color32::from_gray(45),
        };
        let sel = self.selected == Some(l.path.as_str());
        let stroke = if sel {
            Stroke::new(2.5, Color32::WHITE)
        } else {
            Stroke::new(1.0, Color32::from_gray(110))
        };
        p.rect(rect, 5.0, fill, stroke, egui::StrokeKind::Inside);
        let group = !matches!(n, Node::Layer(_));
        let head = if group {
            format!("[+] {} ({})", l.path, kind_of(n))
        } else {
            format!("{}  {}", l.path, l.kind)
        };
        p.text(
            rect.left_top() + vec2(8.0, 6.0),
            Align2::LEFT_TOP,
            head,
            FontId::proportional(12.5),
            Color32::WHITE,
        );
        p.text(
            rect.left_top() + vec2(8.0, 26.0),
            Align2::LEFT_TOP,
            format!(
                "{} · {} params · {} MACs",
                shape(&l.output),
                group_params(l),
                macs(l.macs)
            ),
            FontId::proportional(11.0),
            Color32::from_gray(200),
        );
    }
}

fn kind_of(n: &Node) -> &'static str {
    match n {
        Node::Residual(..) => "residual block",
        Node::Plain(..) => "plain block",
        Node::Parallel(..) => "Inception module",
        Node::Seq(..) => "group",
        Node::Layer(_) => "layer",
    }
}

fn group_params(l: &Layer) -> String {
    thousands(l.params)
}

fn arrow(p: &egui::Painter, from: Pos2, to: Pos2) {
    let stroke = Stroke::new(1.5, Color32::from_gray(150));
    p.line_segment([from, to], stroke);
    let d = (to - from).normalized() * 7.0;
    let side = vec2(-d.y, d.x) * 0.5;
    p.line_segment([to, to - d + side], stroke);
    p.line_segment([to, to - d - side], stroke);
}

impl GraphView {
    /// The model of run `id`, summarised once (a forward pass of one image; shapes only).
    fn ensure_model(&mut self, lab: &Lab, id: u64) -> Result<()> {
        if self.model.as_ref().is_some_and(|m| m.run == id) {
            return Ok(());
        }
        let Some(c) = lab.get(id).and_then(|r| r.classifier()) else {
            self.model = None;
            return Ok(());
        };
        let summary = summarise(c.gpu(), c.net.as_ref(), c.spec.input)?;
        let nodes = structure(&summary, c.net.as_ref(), &c.spec.name);
        // Stages open, blocks and modules closed: the shape of the network at a glance.
        self.expanded = nodes
            .iter()
            .filter_map(|n| match n {
                Node::Seq(i, _) => Some(summary.layers[*i].path.clone()),
                _ => None,
            })
            .collect();
        let mut o = Outline::default();
        count(&nodes, &mut o);
        self.outline = Some((id, o));
        self.model = Some(Model {
            run: id,
            summary,
            nodes,
        });
        self.selected = None;
        self.scene = None;
        Ok(())
    }

    /// Draws the selected run's graph and the clicked node's details.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        lab: &Lab,
        selected: Option<u64>,
        features: &FeaturesView,
        pics: &mut Pictures,
    ) -> Result<()> {
        let Some(id) = FeaturesView::run_id(lab, selected) else {
            ui.label("Add a classifier run to see its model.");
            return Ok(());
        };
        self.ensure_model(lab, id)?;
        let Some(run) = lab.get(id) else {
            return Ok(());
        };
        let Some(m) = &self.model else { return Ok(()) };
        let s = &m.summary;
        ui.horizontal_wrapped(|ui| {
            ui.strong(format!("{}: {}", run.name, run.settings.model));
            ui.label(format!(
                "{} parameters · {} MACs per image · layer outputs {:.1} MB at batch {}",
                thousands(s.params),
                macs(s.macs),
                (s.activation_bytes * run.settings.batch as u64) as f64 / 1e6,
                run.settings.batch
            ));
            if ui.button("Expand all").clicked() {
                self.expanded = s
                    .layers
                    .iter()
                    .filter(|l| l.kind == "group")
                    .map(|l| l.path.clone())
                    .collect();
                self.scene = None;
            }
            if ui.button("Collapse all").clicked() {
                self.expanded.clear();
                self.scene = None;
            }
        });
        ui.label("Drag to pan, scroll to zoom; click a block's title to open or close it, a layer for its details.");
        let mut details = None;
        egui::Panel::right("graph_details")
            .default_size(300.0)
            .show(ui, |ui| {
                details = Some(self.details(ui, lab, id, features, pics));
            });
        let Some(m) = &self.model else { return Ok(()) };
        let mut painter = Painter {
            s: &m.summary,
            expanded: &self.expanded,
            clicks: Vec::new(),
            selected: self.selected.as_deref(),
        };
        let total = painter.column(&m.nodes);
        let mut scene = self.scene.unwrap_or(Rect::ZERO);
        let mut clicked: Option<(String, bool)> = None;
        egui::Scene::new()
            .zoom_range(0.05..=2.0)
            .show(ui, &mut scene, |ui| {
                let (rect, _) = ui.allocate_exact_size(total + vec2(40.0, 40.0), Sense::hover());
                let p = ui.painter().clone();
                let nodes = m.nodes.clone();
                painter.stack(&p, &nodes, rect.min + vec2(20.0, 20.0), total.x);
                for (i, (r, path, group)) in painter.clicks.iter().enumerate() {
                    let resp = ui.interact(*r, ui.scope_id().with(("node", i)), Sense::click());
                    let what = format!("node {path}");
                    resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, &what));
                    if resp.clicked() {
                        clicked = Some((path.clone(), *group));
                    }
                }
            });
        self.scene = Some(scene);
        if let Some((path, group)) = clicked {
            if group {
                if !self.expanded.remove(&path) {
                    self.expanded.insert(path.clone());
                }
                // The drawing changed size: fit it to the view again.
                self.scene = None;
            }
            self.selected = Some(path);
        }
        details.unwrap_or(Ok(()))
    }

    /// The clicked node: numbers, its latest gradient norm, its feature maps.
    fn details(
        &self,
        ui: &mut egui::Ui,
        lab: &Lab,
        id: u64,
        features: &FeaturesView,
        pics: &mut Pictures,
    ) -> Result<()> {
        let (Some(m), Some(path)) = (&self.model, &self.selected) else {
            ui.label("Click a node.");
            return Ok(());
        };
        let Some(l) = m.summary.layers.iter().find(|l| &l.path == path) else {
            return Ok(());
        };
        ui.strong(&l.path);
        ui.label(format!("{} · output {}", l.kind, shape(&l.output)));
        ui.label(format!(
            "{} parameters · {} MACs per image",
            group_params(l),
            macs(l.macs)
        ));
        if let Some(run) = lab.get(id) {
            let weight = format!("{}.weight", l.path);
            if let Some(g) = run.grad_flow.back()
                && let Some(k) = g.layers.iter().position(|n| *n == weight)
            {
                ui.label(format!(
                    "gradient norm {:.3e} (relative {:.3e}) at step {}",
                    g.grad[k],
                    g.relative()[k],
                    g.step
                ));
            }
        }
        if let Some((rid, insp)) = &features.latest
            && *rid == id
            && let Some((name, shape, pic)) = insp.layers.iter().find(|(n, _, _)| n == path)
            && let Some(t) = pics.texture(&format!("run{id}/layer:{name}"), pic)
        {
            ui.label(format!(
                "feature maps {shape:?} of validation image {}",
                features.sample
            ));
            let scale = (280.0 / t.size.x).clamp(0.5, 8.0);
            ui.add(egui::Image::new(t).fit_to_exact_size(t.size * scale));
        }
        Ok(())
    }
}
