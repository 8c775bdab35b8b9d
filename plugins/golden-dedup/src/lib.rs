//! golden-dedup
use weft_guest::prelude::*;
#[derive(Default)]
struct P;
impl Plugin for P {}
weft_guest::export_plugin!(P);
