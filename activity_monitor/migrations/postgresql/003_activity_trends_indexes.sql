-- Indexes the trends and export queries read through.
--
-- Raw events are read only by local-day ranges on idx_user_activity_log_timestamp
-- (migration 001); summaries by date ranges on their primary key. Each extra
-- index on user_activity_log would slow the insert every tracked request makes,
-- so there is none: a day's summary reads its events in one range scan.

-- Trends and exports read ranges of final days only (today's partial row is served apart).
CREATE INDEX IF NOT EXISTS idx_activity_summary_daily_final
    ON activity_summary_daily(date)
    WHERE is_partial = 0;

-- The processor looks for stale rows of other settings, and retention for final rows, by date.
CREATE INDEX IF NOT EXISTS idx_activity_summary_daily_settings
    ON activity_summary_daily(time_zone, idle_minutes, date)
    WHERE is_partial = 0;
