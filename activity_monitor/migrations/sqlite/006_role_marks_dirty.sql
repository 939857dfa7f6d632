-- A changed role changes a day's user_distribution, so it marks the day dirty too.

DROP TRIGGER IF EXISTS trg_user_activity_log_update_marks_dirty;

CREATE TRIGGER trg_user_activity_log_update_marks_dirty
AFTER UPDATE OF session_id, user_id, timestamp, page_url, action_type, role ON user_activity_log
BEGIN
    INSERT OR IGNORE INTO activity_dirty_days (date)
    SELECT date
    FROM activity_summary_daily
    WHERE is_partial = 0
      AND ((utc_end > OLD.timestamp
            AND utc_end <= datetime(OLD.timestamp, '+7 days')
            AND window_start_utc <= OLD.timestamp)
        OR (utc_end > NEW.timestamp
            AND utc_end <= datetime(NEW.timestamp, '+7 days')
            AND window_start_utc <= NEW.timestamp));
END;
