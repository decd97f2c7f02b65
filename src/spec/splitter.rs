//! A TrafficSplitter's `apis`: the RealtimeAPIs it sends requests to and each one's share, in
//! percent. Weights are whole numbers from 0 to 100 that add up to 100; an API appears once.
//! Whether each one is a RealtimeAPI is checked against the rest of the file and the server.

use super::api::check_api_name;
use super::node::Value;
use super::problem::{quote, Problem};
use super::schema;
use super::section::Section;
use super::types::Backend;

pub(crate) fn backends(api: &Section) -> Result<Vec<Backend>, Problem> {
    let node = api.require(
        "apis",
        "list the RealtimeAPIs to split traffic between, e.g. \"apis: [{name: a, weight: 80}, {name: b, weight: 20}]\"",
    )?;
    let Value::Seq(items) = &node.value else {
        return Err(Problem::new(
            node.pos,
            "apis",
            format!(
                "expected a list of {{name, weight}} entries, got {}",
                node.describe()
            ),
        ));
    };
    if items.is_empty() {
        return Err(Problem::new(
            node.pos,
            "apis",
            "must list at least one RealtimeAPI",
        ));
    }
    let mut out: Vec<Backend> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let path = format!("apis[{i}]");
        let sec = Section::new(item, &path, schema::SPLITTER_API)?;
        let name_node = sec.require("name", "name a RealtimeAPI, e.g. \"name: my-api\"")?;
        let name = name_node.text(&sec.field("name"))?.to_string();
        check_api_name(&name)
            .map_err(|message| Problem::new(name_node.pos, sec.field("name"), message))?;
        if out.iter().any(|b| b.name == name) {
            return Err(Problem::new(
                name_node.pos,
                sec.field("name"),
                format!("{} is listed twice; list each api once", quote(&name)),
            ));
        }
        sec.require(
            "weight",
            "give its share of the traffic in percent, e.g. \"weight: 20\"",
        )?;
        let weight = sec.whole_u32("weight", 0, 0, 100)?;
        out.push(Backend { name, weight });
    }
    let total: u32 = out.iter().map(|b| b.weight).sum();
    if total != 100 {
        let weights: Vec<String> = out.iter().map(|b| b.weight.to_string()).collect();
        return Err(Problem::new(
            node.pos,
            "apis",
            format!(
                "the weights must add up to 100, got {} ({total}); change them so they do",
                weights.join(" + ")
            ),
        ));
    }
    Ok(out)
}
