/* The calendar: one row per day from the first day the warehouse knows of (the earliest account
   opening or customer creation, in the bank's zone) to the end of the year after the run's date,
   so that facts and plans dated ahead find their day. Bank holidays are those of England and Wales
   by their standing rules (New Year's Day, Good Friday, Easter Monday, the May, spring and summer
   bank holidays, Christmas and Boxing Day, moved to the next weekday when they fall on a weekend);
   one-off holidays (coronations, jubilees, state funerals) are not listed. FULL: a few thousand
   rows. Grain: date_key. */
MODEL (
  name gold.dim_date,
  kind FULL,
  grain date_key,
  audits (
    not_null(columns := (date_key, calendar_date, year, quarter, month, iso_week, day_of_week, is_weekend, is_month_end, is_bank_holiday)),
    unique_values(columns := (date_key)),
    unique_values(columns := (calendar_date)),
    accepted_range(column := day_of_week, min_v := 1, max_v := 7),
    accepted_range(column := quarter, min_v := 1, max_v := 4)
  )
);

with bounds as (
  select
    least(
      (select min(opened_on) from vault.sat_account_details),
      (select min((created_at at time zone @VAR('bank_timezone'))::date) from vault.sat_customer_details),
      @execution_ds::date
    ) as first_day,
    (date_trunc('year', @execution_ds::date) + interval '2 years' - interval '1 day')::date as last_day
),
days as (
  select d::date as calendar_date
  from bounds, generate_series(first_day, last_day, interval '1 day') as d
),
easter_sundays as (
  /* the Gregorian computus (the anonymous algorithm, Meeus/Jones/Butcher) for every year shown */
  select
    year,
    make_date(
      year,
      (h + l - 7 * m + 114) / 31,
      ((h + l - 7 * m + 114) % 31) + 1
    ) as easter_sunday
  from (
    select
      year, h, l, (a + 11 * h + 22 * l) / 451 as m
    from (
      select
        year, a, h, (32 + 2 * e + 2 * i - h - k) % 7 as l
      from (
        select
          year, a, e, i, k,
          (19 * a + b - d - g + 15) % 30 as h
        from (
          select
            year,
            year % 19 as a,
            year / 100 as b,
            year / 400 as d,
            (year / 100 - (year / 100 + 8) / 25 + 1) / 3 as g,
            (year / 100) % 4 as e,
            (year % 100) / 4 as i,
            (year % 100) % 4 as k
          from (select distinct extract(year from calendar_date)::int as year from days) as years
        ) as step1
      ) as step2
    ) as step3
  ) as step4
),
fixed_holidays as (
  /* New Year's Day, Christmas and Boxing Day, with the substitute days the rules give */
  select
    year,
    case extract(isodow from make_date(year, 1, 1))
      when 6 then make_date(year, 1, 3)
      when 7 then make_date(year, 1, 2)
      else make_date(year, 1, 1)
    end as holiday,
    'New Year''s Day' as name
  from easter_sundays
  union all
  select
    year,
    case extract(isodow from make_date(year, 12, 25))
      when 6 then make_date(year, 12, 27)
      when 7 then make_date(year, 12, 27)
      else make_date(year, 12, 25)
    end,
    'Christmas Day'
  from easter_sundays
  union all
  select
    year,
    case extract(isodow from make_date(year, 12, 26))
      when 6 then make_date(year, 12, 28)
      when 7 then make_date(year, 12, 28)
      else make_date(year, 12, 26)
    end,
    'Boxing Day'
  from easter_sundays
),
bank_holidays as (
  select holiday, name from fixed_holidays
  union all
  select easter_sunday - 2, 'Good Friday' from easter_sundays
  union all
  select easter_sunday + 1, 'Easter Monday' from easter_sundays
  union all
  /* the first Monday of May; the last Mondays of May and of August */
  select
    make_date(year, 5, 1) + ((8 - extract(isodow from make_date(year, 5, 1))::int) % 7),
    'Early May bank holiday'
  from easter_sundays
  union all
  select
    make_date(year, 5, 31) - ((extract(isodow from make_date(year, 5, 31))::int - 1) % 7),
    'Spring bank holiday'
  from easter_sundays
  union all
  select
    make_date(year, 8, 31) - ((extract(isodow from make_date(year, 8, 31))::int - 1) % 7),
    'Summer bank holiday'
  from easter_sundays
)
select
  to_char(d.calendar_date, 'YYYYMMDD')::int as date_key, /* yyyymmdd: the key facts carry */
  d.calendar_date, /* the day */
  extract(year from d.calendar_date)::int as year, /* calendar year */
  extract(quarter from d.calendar_date)::int as quarter, /* calendar quarter, 1 to 4 */
  extract(month from d.calendar_date)::int as month, /* month number, 1 to 12 */
  trim(to_char(d.calendar_date, 'Month')) as month_name, /* January to December */
  date_trunc('month', d.calendar_date)::date as month_start, /* first day of the month */
  extract(isoyear from d.calendar_date)::int as iso_year, /* ISO 8601 week-numbering year */
  extract(week from d.calendar_date)::int as iso_week, /* ISO 8601 week, 1 to 53 (weeks start on Monday) */
  extract(isodow from d.calendar_date)::int as day_of_week, /* ISO day of the week: 1 Monday to 7 Sunday */
  trim(to_char(d.calendar_date, 'Day')) as day_name, /* Monday to Sunday */
  extract(isodow from d.calendar_date) in (6, 7) as is_weekend, /* Saturday or Sunday */
  d.calendar_date = (date_trunc('month', d.calendar_date) + interval '1 month - 1 day')::date as is_month_end, /* the last day of its month */
  h.name is not null as is_bank_holiday, /* a bank holiday in England and Wales (standing rules) */
  h.name as bank_holiday_name, /* which one; null on other days */
  extract(isodow from d.calendar_date) not in (6, 7) and h.name is null as is_working_day /* a weekday that is no bank holiday */
from days as d
left join bank_holidays as h on h.holiday = d.calendar_date
