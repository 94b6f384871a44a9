//! Production predictions in the catalog, for review and the monitor.

use crate::replay::postprocess::Detection;
use engine_core::stage::StageError;

/// Adds a model's segments for one video to the catalog's predictions.
pub async fn record_predictions(
    url: &str,
    uri: &str,
    model: &str,
    segs: &[Detection],
) -> Result<(), StageError> {
    let fail = |e: catalog::CatalogError| StageError::msg(format!("catalog `{url}`: {e}"));
    let cat = catalog::Catalog::open(url).await.map_err(fail)?;
    let id = cat.video_id(uri).await.map_err(fail)?;
    cat.add_detection(id, model, segs.len())
        .await
        .map_err(fail)?;
    for s in segs {
        cat.add_prediction(&catalog::NewPrediction {
            video_id: id,
            model_version: model.to_string(),
            start_s: s.start,
            end_s: s.end,
            score: s.score,
        })
        .await
        .map_err(fail)?;
    }
    cat.close().await;
    Ok(())
}
