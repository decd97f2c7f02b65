//! Teams and their members; a team admin manages the team's members and is Owner of the
//! team's protected models.

use rusqlite::{params, Connection, OptionalExtension};

use super::StoreError;
use crate::clock::now;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamRow {
    pub id: String,
    pub name: String,
}

/// A member of a team.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user_id: String,
    pub username: String,
    pub team_admin: bool,
}

pub fn create(conn: &Connection, name: &str) -> Result<TeamRow, StoreError> {
    let id = uuid::Uuid::new_v4().to_string();
    let inserted = conn.execute(
        "INSERT INTO teams (id, name, created_at) VALUES (?1, ?2, ?3)
         ON CONFLICT(name) DO NOTHING",
        params![id, name, now()],
    )?;
    if inserted == 0 {
        return Err(StoreError::Conflict(format!(
            "a team named {name:?} already exists"
        )));
    }
    Ok(TeamRow {
        id,
        name: name.to_string(),
    })
}

pub fn by_name(conn: &Connection, name: &str) -> Result<Option<TeamRow>, StoreError> {
    Ok(conn
        .query_row("SELECT id, name FROM teams WHERE name = ?1", [name], |r| {
            Ok(TeamRow {
                id: r.get(0)?,
                name: r.get(1)?,
            })
        })
        .optional()?)
}

pub fn list(conn: &Connection) -> Result<Vec<TeamRow>, StoreError> {
    let mut stmt = conn.prepare("SELECT id, name FROM teams ORDER BY name")?;
    let rows = stmt.query_map([], |r| {
        Ok(TeamRow {
            id: r.get(0)?,
            name: r.get(1)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Deletes a team; its protected models become private (their owners keep them).
pub fn delete(conn: &mut Connection, team_id: &str) -> Result<bool, StoreError> {
    let tx = conn.transaction()?;
    tx.execute(
        "UPDATE models SET access = 'private', team_id = NULL WHERE team_id = ?1",
        [team_id],
    )?;
    let n = tx.execute("DELETE FROM teams WHERE id = ?1", [team_id])?;
    tx.commit()?;
    Ok(n > 0)
}

/// Adds a user to a team, or changes whether they are its admin.
pub fn set_member(
    conn: &Connection,
    team_id: &str,
    user_id: &str,
    team_admin: bool,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO team_members (team_id, user_id, team_admin) VALUES (?1, ?2, ?3)
         ON CONFLICT(team_id, user_id) DO UPDATE SET team_admin = excluded.team_admin",
        params![team_id, user_id, team_admin],
    )?;
    Ok(())
}

/// Removes a user from a team; false when they were not a member.
pub fn remove_member(conn: &Connection, team_id: &str, user_id: &str) -> Result<bool, StoreError> {
    let n = conn.execute(
        "DELETE FROM team_members WHERE team_id = ?1 AND user_id = ?2",
        params![team_id, user_id],
    )?;
    Ok(n > 0)
}

pub fn members(conn: &Connection, team_id: &str) -> Result<Vec<Member>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT m.user_id, u.username, m.team_admin FROM team_members m
         JOIN users u ON u.id = m.user_id WHERE m.team_id = ?1 ORDER BY u.username",
    )?;
    let rows = stmt.query_map([team_id], |r| {
        Ok(Member {
            user_id: r.get(0)?,
            username: r.get(1)?,
            team_admin: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The teams a user belongs to, and whether they are each team's admin.
pub fn memberships(conn: &Connection, user_id: &str) -> Result<Vec<(String, bool)>, StoreError> {
    let mut stmt =
        conn.prepare("SELECT team_id, team_admin FROM team_members WHERE user_id = ?1")?;
    let rows = stmt.query_map([user_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}
