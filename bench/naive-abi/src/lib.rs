//! A trivial mapping (copy every field) behind the naive per-field-string ABI. The
//! benchmark runs the same copy behind the columnar ABI (the guest SDK's default mapping)
//! to show what the batch layout alone costs.

wit_bindgen::generate!({ path: "wit", world: "naive" });

struct Naive;

impl Guest for Naive {
    fn map_records(records: Vec<Vec<Field>>) -> Vec<Vec<Field>> {
        records
            .iter()
            .map(|record| {
                record
                    .iter()
                    .map(|f| Field {
                        name: f.name.clone(),
                        value: f.value.clone(),
                    })
                    .collect()
            })
            .collect()
    }
}

export!(Naive);
