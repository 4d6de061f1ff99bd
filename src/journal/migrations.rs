//! The journal's schema, versioned with `PRAGMA user_version` and upgraded in place, one
//! migration after the other, each in its own transaction.

use rusqlite::Connection;

/// Migration `i` takes a journal from version `i` to `i + 1`. Version 1 is the schema of
/// release 0.1.0, which did not set `user_version`: its statements create nothing that
/// exists already, so a 0.1.0 journal (version 0 with its tables) passes through it as it is.
pub(super) const MIGRATIONS: [&str; 4] = [
    include_str!("schema_v1.sql"),
    include_str!("schema_v2.sql"),
    include_str!("schema_v3.sql"),
    include_str!("schema_v4.sql"),
];

/// The version this release writes.
pub const CURRENT_VERSION: usize = MIGRATIONS.len();

/// Brings the journal to [`CURRENT_VERSION`]; refuses one written by a newer release.
pub fn migrate(db: &mut Connection) -> Result<(), String> {
    let version = version_of(db).map_err(|err| err.to_string())?;
    if version > CURRENT_VERSION {
        return Err(format!(
            "it was written by a newer release of autoredeploy (journal version {version}, this \
             release knows up to {CURRENT_VERSION}); run that release, or move the data \
             directory aside"
        ));
    }
    for (from, statements) in MIGRATIONS.iter().enumerate().skip(version) {
        let mut apply = || -> rusqlite::Result<()> {
            let transaction = db.transaction()?;
            transaction.execute_batch(statements)?;
            transaction.pragma_update(None, "user_version", (from + 1) as i64)?;
            transaction.commit()
        };
        apply().map_err(|err| format!("upgrading it to version {}: {err}", from + 1))?;
        if from > 0 {
            tracing::info!(version = from + 1, "journal upgraded");
        }
    }
    Ok(())
}

/// The journal's schema version.
pub fn version_of(db: &Connection) -> rusqlite::Result<usize> {
    db.pragma_query_value(None, "user_version", |row| row.get::<_, i64>(0))
        .map(|version| usize::try_from(version).unwrap_or(usize::MAX))
}
