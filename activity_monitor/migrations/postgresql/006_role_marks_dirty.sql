-- A changed role changes a day's user_distribution, so it marks the day dirty too.

CREATE OR REPLACE TRIGGER trg_user_activity_log_update_marks_dirty
AFTER UPDATE OF session_id, user_id, timestamp, page_url, action_type, role ON user_activity_log
FOR EACH ROW EXECUTE FUNCTION activity_log_marks_days_dirty();
