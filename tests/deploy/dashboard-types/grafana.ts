/**
 * The types deploy/grafana/itnio-exporter.json must satisfy, from @grafana/schema, read the way
 * Grafana reads dashboard JSON. tests/deploy/test_dashboard_types.py writes the dashboard out as
 * TypeScript literals, `satisfies Dashboard` for the whole and `satisfies PanelOf<"<type>">` for
 * each panel, and runs tsc on them.
 *
 * Rules:
 * - Enums compare by value: JSON holds "auto", never `TimelineValueAlignment.Auto`, so every enum
 *   member becomes its string (or number) literal (`Loosen`).
 * - Keys stay exact: every type here is a mapped type over the schema's own keys, so the excess
 *   property check of `satisfies` still rejects a misspelt key at any depth.
 * - Panel options and field config may be partial (`Filled`): Grafana merges each panel plugin's
 *   defaults into what the JSON leaves out. Elsewhere the schema's required fields stay required,
 *   except the few listed below that Grafana fills in itself.
 * - A panel type missing from `PanelTypes` is an error, not an unchecked panel: add it here.
 */
import type * as raw from '@grafana/schema/dist/esm/raw/dashboard/x/Dashboard_types.gen';
import type * as barchart from '@grafana/schema/dist/esm/raw/composable/barchart/panelcfg/x/BarChartPanelCfg_types.gen';
import type * as bargauge from '@grafana/schema/dist/esm/raw/composable/bargauge/panelcfg/x/BarGaugePanelCfg_types.gen';
import type * as gauge from '@grafana/schema/dist/esm/raw/composable/gauge/panelcfg/x/GaugePanelCfg_types.gen';
import type * as heatmap from '@grafana/schema/dist/esm/raw/composable/heatmap/panelcfg/x/HeatmapPanelCfg_types.gen';
import type * as histogram from '@grafana/schema/dist/esm/raw/composable/histogram/panelcfg/x/HistogramPanelCfg_types.gen';
import type * as piechart from '@grafana/schema/dist/esm/raw/composable/piechart/panelcfg/x/PieChartPanelCfg_types.gen';
import type * as stat from '@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen';
import type * as statetimeline from '@grafana/schema/dist/esm/raw/composable/statetimeline/panelcfg/x/StateTimelinePanelCfg_types.gen';
import type * as statushistory from '@grafana/schema/dist/esm/raw/composable/statushistory/panelcfg/x/StatusHistoryPanelCfg_types.gen';
import type * as table from '@grafana/schema/dist/esm/raw/composable/table/panelcfg/x/TablePanelCfg_types.gen';
import type * as text from '@grafana/schema/dist/esm/raw/composable/text/panelcfg/x/TextPanelCfg_types.gen';
import type * as timeseries from '@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen';

/** A panel plugin with no custom field config: `custom` must be empty. */
type NoCustom = Record<string, never>;

/** Panel plugin id -> its options and its `fieldConfig.defaults.custom`. */
export interface PanelTypes {
  barchart: { options: barchart.Options; custom: barchart.FieldConfig };
  bargauge: { options: bargauge.Options; custom: NoCustom };
  gauge: { options: gauge.Options; custom: NoCustom };
  heatmap: { options: heatmap.Options; custom: heatmap.FieldConfig };
  histogram: { options: histogram.Options; custom: histogram.FieldConfig };
  piechart: { options: piechart.Options; custom: piechart.FieldConfig };
  stat: { options: stat.Options; custom: NoCustom };
  'state-timeline': { options: statetimeline.Options; custom: statetimeline.FieldConfig };
  'status-history': { options: statushistory.Options; custom: statushistory.FieldConfig };
  table: { options: table.Options; custom: table.FieldConfig };
  text: { options: text.Options; custom: NoCustom };
  timeseries: { options: timeseries.Options; custom: timeseries.FieldConfig };
}

type Primitive = string | number | boolean | bigint | symbol | null | undefined;

/** An enum member as its value: `${E}` for strings, the number literal for numeric enums. */
type ByValue<T> = T extends string
  ? `${T}`
  : T extends number
    ? number extends T
      ? T
      : `${T}` extends `${infer N extends number}`
        ? N
        : never
    : T;

/**
 * T with every enum, at any depth, compared by value; keys unchanged, and every key optional when
 * `Optional` is true.
 */
type ByValueDeep<T, Optional extends boolean> = unknown extends T
  ? T
  : T extends Primitive
    ? ByValue<T>
    : T extends (...args: never[]) => unknown
      ? T
      : T extends ReadonlyArray<infer U>
        ? Array<ByValueDeep<U, Optional>>
        : Optional extends true
          ? { [K in keyof T]?: ByValueDeep<T[K], Optional> }
          : { [K in keyof T]: ByValueDeep<T[K], Optional> };

/** T with enums compared by value, its required keys still required. */
export type Loosen<T> = ByValueDeep<T, false>;

/** Loosen<T> with every key optional at every depth: what Grafana completes from plugin defaults. */
export type Filled<T> = ByValueDeep<T, true>;

/** One object type with B's keys replacing A's (a mapped type, so excess keys stay errors). */
type Merge<A, B> = { [K in keyof (Omit<A, keyof B> & B)]: (Omit<A, keyof B> & B)[K] };

type FieldBase = Omit<raw.FieldConfig, 'custom'>;

/** An override property: its id names a field config key (`custom.<key>` for the plugin's own). */
type OverrideProperty<Custom> =
  | { [K in keyof FieldBase & string]-?: { id: K; value?: Loosen<FieldBase[K]> } }[keyof FieldBase & string]
  | { [K in keyof Custom & string]-?: { id: `custom.${K}`; value?: Filled<Custom[K]> } }[keyof Custom & string];

type FieldConfigSource<Custom> = {
  defaults: Merge<Loosen<FieldBase>, { custom?: Filled<Custom> }>;
  overrides: Array<{ matcher: Loosen<raw.MatcherConfig>; properties: Array<OverrideProperty<Custom>> }>;
};

/** A panel of plugin `Type`, its options and field config checked against that plugin's types. */
export type PanelOf<Type extends keyof PanelTypes> = Merge<
  Loosen<Omit<raw.Panel, 'options' | 'fieldConfig'>>,
  {
    type: Type;
    options?: Filled<PanelTypes[Type]['options']>;
    fieldConfig?: FieldConfigSource<PanelTypes[Type]['custom']>;
  }
>;

/** Each panel is checked by its own `satisfies PanelOf<...>`; here it only has to be a panel. */
type AnyPanel = { type: string } & Record<string, unknown>;

export type Row = Merge<Loosen<Omit<raw.RowPanel, 'panels'>>, { panels: Array<AnyPanel> }>;

/** Grafana fills in `current` on load; query variables keep their editor's text in `definition`. */
type Variable = Merge<
  Loosen<raw.VariableModel>,
  { current?: Filled<raw.VariableOption>; definition?: string }
>;

/** What Grafana's import reads before the dashboard itself (an export's `__inputs`, `__requires`). */
type ImportHeader = {
  __inputs?: Array<{
    name: string;
    label: string;
    description?: string;
    type: 'datasource' | 'constant';
    pluginId?: string;
    pluginName?: string;
    value?: string;
  }>;
  __elements?: Record<string, unknown>;
  __requires?: Array<{ type: 'grafana' | 'datasource' | 'panel'; id: string; name: string; version: string }>;
};

/** The keys the schema gives defaults for (its defaultDashboardLink) may be left out. */
type Link = Merge<
  Loosen<raw.DashboardLink>,
  Partial<Pick<raw.DashboardLink, 'asDropdown' | 'includeVars' | 'keepTime' | 'tags' | 'targetBlank'>>
>;

export type Dashboard = Merge<
  Loosen<Omit<raw.Dashboard, 'panels' | 'templating' | 'links'>>,
  ImportHeader & { links?: Array<Link>; panels?: Array<Row | AnyPanel>; templating?: { list?: Array<Variable> } }
>;
