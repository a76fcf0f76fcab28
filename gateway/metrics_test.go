package gateway

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/printer"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/uploadgate/uploadgate/auth"
)

// metricsDoc is the section "When series appear" of docs/metrics.md: the
// labelled series at 0 from the start with the values of each label, and the
// labelled series that appear with their first event.
type metricsDoc struct {
	zeroed    map[string][]docLabel
	firstUse  []string
	zeroOrder []string
}

type docLabel struct {
	name   string
	values []string
}

var (
	docItem      = regexp.MustCompile("^- `([a-z_]+)`(?::|,| and| \\()")
	docLabelPart = regexp.MustCompile("^`([a-z_]+)` = ((?:`[^`]+`(?:, )?)+)$")
	docBackticks = regexp.MustCompile("`([^`]+)`")
	descName     = regexp.MustCompile(`fqName: "([a-zA-Z_:][a-zA-Z0-9_:]*)"`)
)

// readMetricsDoc parses the lists of the section "When series appear": under
// "### At 0 from the start" the items are `name`: `label` = `a`, `b` ×
// `other` = `c` (an optional remark), and under "### With their first event"
// the items start with `name`.
func readMetricsDoc(t *testing.T) metricsDoc {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "docs", "metrics.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := metricsDoc{zeroed: map[string][]docLabel{}}
	section, sub := "", ""
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "## "):
			section, sub = line, ""
			continue
		case strings.HasPrefix(line, "### "):
			sub = line
			continue
		}
		if section != "## When series appear" {
			continue
		}
		m := docItem.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		switch sub {
		case "### At 0 from the start":
			rest := strings.TrimPrefix(line, "- `"+m[1]+"`: ")
			if i := strings.Index(rest, " ("); i >= 0 {
				rest = rest[:i]
			}
			var labels []docLabel
			for _, part := range strings.Split(rest, " × ") {
				lm := docLabelPart.FindStringSubmatch(part)
				if lm == nil {
					t.Fatalf("docs/metrics.md: %q: want `label` = `value`, `value` (× `label` = …)", line)
				}
				l := docLabel{name: lm[1]}
				for _, v := range docBackticks.FindAllStringSubmatch(lm[2], -1) {
					l.values = append(l.values, v[1])
				}
				labels = append(labels, l)
			}
			doc.zeroed[m[1]] = labels
			doc.zeroOrder = append(doc.zeroOrder, m[1])
		case "### With their first event":
			doc.firstUse = append(doc.firstUse, m[1])
		}
	}
	if len(doc.zeroed) < 5 || len(doc.firstUse) < 2 {
		t.Fatalf("docs/metrics.md, When series appear: found %d series at 0 and %d with their first event; the section's form changed", len(doc.zeroed), len(doc.firstUse))
	}
	return doc
}

// collectorName is the name of the one metric family c describes.
func collectorName(t *testing.T, c prometheus.Collector) string {
	t.Helper()
	ch := make(chan *prometheus.Desc, 1)
	c.Describe(ch)
	m := descName.FindStringSubmatch((<-ch).String())
	if m == nil {
		t.Fatalf("no name in the description of %T", c)
	}
	return m[1]
}

// labelledFields are the fields of metrics that hold a metric vector, by
// field name.
func labelledFields(m *metrics) map[string]prometheus.Collector {
	out := map[string]prometheus.Collector{}
	v := reflect.ValueOf(m).Elem()
	for i := 0; i < v.NumField(); i++ {
		// The fields are unexported: read them through their address.
		f := v.Field(i)
		switch c := reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem().Interface().(type) {
		case *prometheus.CounterVec, *prometheus.HistogramVec, *prometheus.GaugeVec, *prometheus.SummaryVec:
			out[v.Type().Field(i).Name] = c.(prometheus.Collector)
		}
	}
	return out
}

// zeroedFields maps the field names of m's zeroed counters to their label
// values.
func zeroedFields(t *testing.T, m *metrics) map[string][][]string {
	t.Helper()
	out := map[string][][]string{}
	for name, c := range labelledFields(m) {
		for _, z := range m.zeroed() {
			if c == prometheus.Collector(z.vec) {
				out[name] = z.values
			}
		}
	}
	if len(out) != len(m.zeroed()) {
		t.Fatalf("%d of the %d zeroed counters are fields of metrics", len(out), len(m.zeroed()))
	}
	return out
}

// A fresh gateway serves every documented label value of the zeroed counters
// at 0, and nothing else of them; every other labelled series of the gateway
// is documented as appearing with its first event.
func TestMetricsStartAtZero(t *testing.T) {
	doc := readMetricsDoc(t)
	tg := newTestGateway(t)
	m := tg.gw.metrics

	zeroedNames := map[string]bool{}
	for field, c := range labelledFields(m) {
		name := collectorName(t, c)
		_, zeroed := zeroedFields(t, m)[field]
		_, documentedZero := doc.zeroed[name]
		switch {
		case zeroed && !documentedZero:
			t.Errorf("%s starts at 0, but docs/metrics.md does not list it under At 0 from the start", name)
		case !zeroed && documentedZero:
			t.Errorf("docs/metrics.md lists %s under At 0 from the start, but it is not among metrics.zeroed", name)
		case !zeroed && !slices.Contains(doc.firstUse, name):
			t.Errorf("%s appears with its first event, but docs/metrics.md does not list it under With their first event", name)
		}
		if zeroed {
			zeroedNames[name] = true
		}
	}

	mfs, err := tg.gw.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]int{}
	for i, mf := range mfs {
		served[mf.GetName()] = i
	}
	for _, name := range doc.zeroOrder {
		labels := doc.zeroed[name]
		i, ok := served[name]
		if !ok {
			t.Errorf("%s: documented at 0 from the start, but a fresh gateway does not serve it", name)
			continue
		}
		want := map[string]bool{}
		sets := make([][]string, len(labels))
		for i, l := range labels {
			sets[i] = l.values
		}
		combinations(sets, func(values []string) {
			var kv []string
			for i, v := range values {
				kv = append(kv, labels[i].name+"="+v)
			}
			sort.Strings(kv)
			want[strings.Join(kv, ",")] = true
		})
		got := map[string]bool{}
		for _, s := range mfs[i].GetMetric() {
			var kv []string
			for _, l := range s.GetLabel() {
				kv = append(kv, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(kv)
			key := strings.Join(kv, ",")
			got[key] = true
			if v := s.GetCounter().GetValue(); v != 0 {
				t.Errorf("%s{%s} = %v on a fresh gateway, want 0", name, key, v)
			}
			if !want[key] {
				t.Errorf("%s{%s} is served by a fresh gateway, but docs/metrics.md does not list these label values", name, key)
			}
		}
		for key := range want {
			if !got[key] {
				t.Errorf("%s{%s} is documented at 0 from the start, but a fresh gateway does not serve it", name, key)
			}
		}
	}
	// The registry holds no labelled uploadgate_ counter that the lists miss.
	for _, mf := range mfs {
		name := mf.GetName()
		if strings.HasPrefix(name, "uploadgate_") && mf.GetType().String() == "COUNTER" && len(mf.GetMetric()) > 0 &&
			len(mf.GetMetric()[0].GetLabel()) > 0 && !zeroedNames[name] {
			t.Errorf("a fresh gateway serves %s, which is not a zeroed counter", name)
		}
	}
}

// The protocols of uploadgate_slot_checks_total are auth.Protocols, and
// auth.Protocols lists every auth.Protocol constant.
func TestMetricProtocolsListed(t *testing.T) {
	code := parseLabelCode(t)
	var consts []string
	for _, v := range code.authProtocols {
		consts = append(consts, v)
	}
	var listed []string
	for _, p := range auth.Protocols {
		listed = append(listed, string(p))
	}
	sort.Strings(consts)
	sort.Strings(listed)
	if !slices.Equal(consts, listed) {
		t.Errorf("the auth.Protocol constants are %v, auth.Protocols lists %v", consts, listed)
	}
	for _, p := range listed {
		if !slices.Contains(slotProtocols, p) {
			t.Errorf("protocol %s is not a label value of uploadgate_slot_checks_total", p)
		}
	}
}

// Every value the gateway counts in a zeroed counter comes from the declared
// label values: the source is read, and each label value passed to
// WithLabelValues is traced to the constants it can be.
func TestMetricLabelValuesDeclared(t *testing.T) {
	code := parseLabelCode(t)
	m := newTestGateway(t).gw.metrics
	zeroed := zeroedFields(t, m)
	counted := map[string]int{}
	for _, fn := range code.funcDecls() {
		ast.Inspect(fn, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			sets, guarded := zeroed[sel.Sel.Name]
			if !guarded {
				return true
			}
			if fn.Name.Name == "newMetrics" || fn.Name.Name == "zeroed" {
				return true
			}
			call := code.parentCall(fn, sel)
			if call == nil {
				t.Errorf("%s: %s is used other than by .WithLabelValues(…); count it with WithLabelValues so that this test can check its values", code.pos(sel), code.src(sel))
				return true
			}
			counted[sel.Sel.Name]++
			if call.Ellipsis.IsValid() || len(call.Args) != len(sets) {
				t.Errorf("%s: %s: want %d label values, one argument each", code.pos(call), code.src(call), len(sets))
				return true
			}
			for i, arg := range call.Args {
				values, err := code.values(arg, fn, 0)
				if err != nil {
					t.Errorf("%s: label %d of %s: %v; use a constant of the declared label values", code.pos(arg), i+1, sel.Sel.Name, err)
					continue
				}
				for _, v := range values {
					if !slices.Contains(sets[i], v) {
						t.Errorf("%s: %s counts %q, which is not among its declared label values %v (so it would not start at 0)", code.pos(arg), code.src(call), v, sets[i])
					}
				}
			}
			return true
		})
	}
	for field := range zeroed {
		if counted[field] == 0 {
			t.Errorf("metrics.%s is zeroed but never counted with WithLabelValues", field)
		}
	}
}

// labelCode is the source of the gateway package (without its tests), and
// the constants of package auth, for tracing label values.
type labelCode struct {
	fset          *token.FileSet
	files         []*ast.File
	consts        map[string]ast.Expr
	vars          map[string]*ast.ValueSpec
	funcs         map[string][]*ast.FuncDecl
	authConsts    map[string]string
	authProtocols map[string]string
	calls         []siteCall
}

// siteCall is a call and the function it is in.
type siteCall struct {
	call *ast.CallExpr
	in   *ast.FuncDecl
}

func parseLabelCode(t *testing.T) *labelCode {
	t.Helper()
	c := &labelCode{fset: token.NewFileSet(), consts: map[string]ast.Expr{}, vars: map[string]*ast.ValueSpec{},
		funcs: map[string][]*ast.FuncDecl{}, authConsts: map[string]string{}, authProtocols: map[string]string{}}
	for _, dir := range []string{".", filepath.Join("..", "auth")} {
		paths, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range paths {
			if strings.HasSuffix(p, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(c.fset, p, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			if dir == "." {
				c.addGateway(f)
			} else {
				c.addAuth(t, f)
			}
		}
	}
	if len(c.funcs) < 10 || len(c.authProtocols) == 0 {
		t.Fatalf("read %d functions of package gateway and %d protocols of package auth", len(c.funcs), len(c.authProtocols))
	}
	for _, fn := range c.funcDecls() {
		ast.Inspect(fn, func(n ast.Node) bool {
			if call, ok := n.(*ast.CallExpr); ok {
				c.calls = append(c.calls, siteCall{call: call, in: fn})
			}
			return true
		})
	}
	return c
}

func (c *labelCode) addGateway(f *ast.File) {
	c.files = append(c.files, f)
	for _, d := range f.Decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			c.funcs[d.Name.Name] = append(c.funcs[d.Name.Name], d)
		case *ast.GenDecl:
			for _, s := range d.Specs {
				vs, ok := s.(*ast.ValueSpec)
				if !ok {
					continue
				}
				for i, n := range vs.Names {
					switch {
					case d.Tok == token.CONST && i < len(vs.Values):
						c.consts[n.Name] = vs.Values[i]
					case d.Tok == token.VAR:
						c.vars[n.Name] = vs
					}
				}
			}
		}
	}
}

// addAuth records the string constants of package auth, and which of them
// are of type Protocol.
func (c *labelCode) addAuth(t *testing.T, f *ast.File) {
	t.Helper()
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			continue
		}
		for _, s := range gd.Specs {
			vs := s.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if i >= len(vs.Values) {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					continue
				}
				v, err := strconv.Unquote(lit.Value)
				if err != nil {
					t.Fatal(err)
				}
				c.authConsts[n.Name] = v
				if id, ok := vs.Type.(*ast.Ident); ok && id.Name == "Protocol" {
					c.authProtocols[n.Name] = v
				}
			}
		}
	}
}

func (c *labelCode) funcDecls() []*ast.FuncDecl {
	var out []*ast.FuncDecl
	for _, f := range c.files {
		for _, d := range f.Decls {
			if fn, ok := d.(*ast.FuncDecl); ok && fn.Body != nil {
				out = append(out, fn)
			}
		}
	}
	return out
}

func (c *labelCode) pos(n ast.Node) string {
	p := c.fset.Position(n.Pos())
	return fmt.Sprintf("%s:%d", filepath.Base(p.Filename), p.Line)
}

func (c *labelCode) src(n ast.Node) string {
	var b strings.Builder
	_ = printer.Fprint(&b, c.fset, n)
	return b.String()
}

// parentCall is the call sel.WithLabelValues(…) when sel is used that way.
func (c *labelCode) parentCall(fn *ast.FuncDecl, sel *ast.SelectorExpr) *ast.CallExpr {
	var found *ast.CallExpr
	ast.Inspect(fn, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || found != nil {
			return found == nil
		}
		if f, ok := call.Fun.(*ast.SelectorExpr); ok && f.X == sel && f.Sel.Name == "WithLabelValues" {
			found = call
		}
		return true
	})
	return found
}

// maxTrace bounds how far a value is traced through assignments and calls.
const maxTrace = 12

// values returns every value that e, an expression in fn (nil: at package
// level), can have, or an error when the code does not tell.
func (c *labelCode) values(e ast.Expr, fn *ast.FuncDecl, depth int) ([]string, error) {
	if depth > maxTrace {
		return nil, fmt.Errorf("%s traced too far", c.src(e))
	}
	switch e := e.(type) {
	case *ast.BasicLit:
		if e.Kind == token.STRING {
			v, err := strconv.Unquote(e.Value)
			return []string{v}, err
		}
	case *ast.ParenExpr:
		return c.values(e.X, fn, depth+1)
	case *ast.Ident:
		if fn != nil {
			if values, found, err := c.localValues(e.Name, fn, depth); found {
				return values, err
			}
		}
		if x, ok := c.consts[e.Name]; ok {
			return c.values(x, nil, depth+1)
		}
	case *ast.CallExpr:
		// A conversion to string.
		if id, ok := e.Fun.(*ast.Ident); ok && id.Name == "string" && len(e.Args) == 1 {
			return c.values(e.Args[0], fn, depth+1)
		}
		// A call of a function of the package: whatever it returns.
		if f := c.callee(e); f != nil {
			return c.returns(f, depth+1)
		}
	case *ast.SelectorExpr:
		x, _ := e.X.(*ast.Ident)
		if x == nil {
			break
		}
		// A constant of package auth.
		if v, ok := c.authConsts[e.Sel.Name]; ok && x.Name == "auth" {
			return []string{v}, nil
		}
		// The Protocol of an auth.Slot: an auth.Protocol constant
		// (TestMetricProtocolsListed checks that each is in auth.Protocols).
		if e.Sel.Name == "Protocol" && fn != nil && c.isParamOfType(x.Name, fn, "auth", "Slot") {
			var out []string
			for _, v := range c.authProtocols {
				out = append(out, v)
			}
			sort.Strings(out)
			return out, nil
		}
		// A field of the elements of a package-level table that fn ranges over.
		if fn != nil {
			if table := c.rangedTable(x.Name, fn); table != nil {
				return c.fieldValues(table, e.Sel.Name, depth+1)
			}
		}
	}
	return nil, fmt.Errorf("cannot tell the values of %s", c.src(e))
}

// localValues returns the values of the variable or parameter name in fn:
// what every assignment to it assigns, or for a parameter what every call
// of fn passes. found is false when fn has no such variable.
func (c *labelCode) localValues(name string, fn *ast.FuncDecl, depth int) (values []string, found bool, err error) {
	add := func(e ast.Expr, in *ast.FuncDecl) {
		found = true
		if err != nil {
			return
		}
		vs, verr := c.values(e, in, depth+1)
		if verr != nil {
			err = verr
		}
		values = append(values, vs...)
	}
	fail := func(format string, args ...any) {
		found = true
		if err == nil {
			err = fmt.Errorf(format, args...)
		}
	}
	// A parameter: the argument of every call.
	index := 0
	for _, field := range fn.Type.Params.List {
		for _, n := range field.Names {
			if n.Name == name {
				calls := 0
				for _, sc := range c.calls {
					if c.callee(sc.call) == fn {
						calls++
						if index < len(sc.call.Args) && !sc.call.Ellipsis.IsValid() {
							add(sc.call.Args[index], sc.in)
						} else {
							fail("a call of %s at %s passes %s otherwise", fn.Name.Name, c.pos(sc.call), name)
						}
					}
				}
				if calls == 0 {
					fail("%s is a parameter of %s, which is never called", name, fn.Name.Name)
				}
				return values, found, err
			}
			index++
		}
	}
	ast.Inspect(fn.Body, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.AssignStmt:
			for i, lhs := range n.Lhs {
				if id, ok := lhs.(*ast.Ident); !ok || id.Name != name {
					continue
				}
				switch {
				case n.Tok != token.DEFINE && n.Tok != token.ASSIGN:
					fail("%s: %s is changed by %s", c.pos(n), name, n.Tok)
				case len(n.Lhs) != len(n.Rhs):
					fail("%s: %s is one of several results", c.pos(n), name)
				default:
					add(n.Rhs[i], fn)
				}
			}
		case *ast.ValueSpec:
			for i, id := range n.Names {
				if id.Name != name {
					continue
				}
				if i < len(n.Values) {
					add(n.Values[i], fn)
				} else {
					fail("%s: %s is declared without a value", c.pos(n), name)
				}
			}
		case *ast.RangeStmt:
			for _, x := range []ast.Expr{n.Key, n.Value} {
				if id, ok := x.(*ast.Ident); ok && id.Name == name {
					fail("%s: %s is a range variable", c.pos(n), name)
				}
			}
		case *ast.FuncLit:
			for _, field := range n.Type.Params.List {
				for _, id := range field.Names {
					if id.Name == name {
						fail("%s: %s is a parameter of a function literal", c.pos(n), name)
					}
				}
			}
		case *ast.UnaryExpr:
			if id, ok := n.X.(*ast.Ident); ok && id.Name == name && n.Op == token.AND {
				fail("%s: the address of %s is taken", c.pos(n), name)
			}
		}
		return true
	})
	return values, found, err
}

// callee is the one function or method of the package that call calls, by
// name; nil when none or several have that name.
func (c *labelCode) callee(call *ast.CallExpr) *ast.FuncDecl {
	var name string
	switch f := call.Fun.(type) {
	case *ast.Ident:
		name = f.Name
	case *ast.SelectorExpr:
		name = f.Sel.Name
	default:
		return nil
	}
	if fs := c.funcs[name]; len(fs) == 1 {
		return fs[0]
	}
	return nil
}

// returns is every value that f, a function with one result, returns.
func (c *labelCode) returns(f *ast.FuncDecl, depth int) ([]string, error) {
	var values []string
	var err error
	ast.Inspect(f.Body, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.FuncLit:
			return false
		case *ast.ReturnStmt:
			if err != nil {
				return false
			}
			if len(n.Results) != 1 {
				err = fmt.Errorf("%s: %s does not return one value", c.pos(n), f.Name.Name)
				return false
			}
			vs, verr := c.values(n.Results[0], f, depth+1)
			if verr != nil {
				err = verr
			}
			values = append(values, vs...)
		}
		return true
	})
	if err == nil && len(values) == 0 {
		err = fmt.Errorf("%s returns nothing", f.Name.Name)
	}
	return values, err
}

// isParamOfType reports whether name is a parameter of fn of type pkg.typ.
func (c *labelCode) isParamOfType(name string, fn *ast.FuncDecl, pkg, typ string) bool {
	for _, field := range fn.Type.Params.List {
		sel, ok := field.Type.(*ast.SelectorExpr)
		if !ok {
			continue
		}
		x, ok := sel.X.(*ast.Ident)
		if !ok || x.Name != pkg || sel.Sel.Name != typ {
			continue
		}
		for _, n := range field.Names {
			if n.Name == name {
				return true
			}
		}
	}
	return false
}

// rangedTable is the package-level composite literal that name ranges over
// as the value of a for statement in fn, if it does.
func (c *labelCode) rangedTable(name string, fn *ast.FuncDecl) *ast.CompositeLit {
	var table *ast.CompositeLit
	ast.Inspect(fn.Body, func(n ast.Node) bool {
		r, ok := n.(*ast.RangeStmt)
		if !ok {
			return true
		}
		v, ok := r.Value.(*ast.Ident)
		if !ok || v.Name != name {
			return true
		}
		x, ok := r.X.(*ast.Ident)
		if !ok {
			return true
		}
		if vs := c.vars[x.Name]; vs != nil && len(vs.Names) == 1 && len(vs.Values) == 1 {
			table, _ = vs.Values[0].(*ast.CompositeLit)
		}
		return true
	})
	return table
}

// fieldValues is every value of field in the struct elements of a slice
// literal, keyed or positional.
func (c *labelCode) fieldValues(table *ast.CompositeLit, field string, depth int) ([]string, error) {
	at, ok := table.Type.(*ast.ArrayType)
	if !ok {
		return nil, fmt.Errorf("%s: not a slice of structs", c.pos(table))
	}
	st, ok := at.Elt.(*ast.StructType)
	if !ok {
		return nil, fmt.Errorf("%s: not a slice of structs", c.pos(table))
	}
	index, i := -1, 0
	for _, f := range st.Fields.List {
		for _, n := range f.Names {
			if n.Name == field {
				index = i
			}
			i++
		}
	}
	if index < 0 {
		return nil, fmt.Errorf("%s: no field %s", c.pos(table), field)
	}
	var values []string
	for _, el := range table.Elts {
		lit, ok := el.(*ast.CompositeLit)
		if !ok {
			return nil, fmt.Errorf("%s: an element is not a literal", c.pos(el))
		}
		var v ast.Expr
		for j, x := range lit.Elts {
			if kv, ok := x.(*ast.KeyValueExpr); ok {
				if k, ok := kv.Key.(*ast.Ident); ok && k.Name == field {
					v = kv.Value
				}
			} else if j == index {
				v = x
			}
		}
		if v == nil {
			return nil, fmt.Errorf("%s: an element has no %s", c.pos(lit), field)
		}
		vs, err := c.values(v, nil, depth+1)
		if err != nil {
			return nil, err
		}
		values = append(values, vs...)
	}
	return values, nil
}

// The tracer itself: it finds values through constants, assignments,
// parameters, returns and tables, and refuses what it cannot follow.
func TestMetricLabelTracer(t *testing.T) {
	src := `package gateway

const (
	good  = "good"
	other = "other"
)

var table = []struct {
	n      int
	reason string
}{{1, good}, {n: 2, reason: other}}

func pick(x int) string {
	if x > 0 {
		return good
	}
	return "literal"
}

func fromTable() string {
	for _, c := range table {
		return c.reason
	}
	return other
}

func count(kind string) { use(kind) }

func callers(s string) {
	count(good)
	count(other)
}

func assigned(s string) {
	v := good
	if s != "" {
		v = other
	}
	use(v)
	w := s
	use(w)
	x := pick(1)
	use(x)
	y := fromTable()
	use(y)
	z := good
	z += "x"
	use(z)
}

func use(string) {}
`
	c := &labelCode{fset: token.NewFileSet(), consts: map[string]ast.Expr{}, vars: map[string]*ast.ValueSpec{},
		funcs: map[string][]*ast.FuncDecl{}, authConsts: map[string]string{}, authProtocols: map[string]string{}}
	f, err := parser.ParseFile(c.fset, "tracer.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	c.addGateway(f)
	for _, fn := range c.funcDecls() {
		ast.Inspect(fn, func(n ast.Node) bool {
			if call, ok := n.(*ast.CallExpr); ok {
				c.calls = append(c.calls, siteCall{call: call, in: fn})
			}
			return true
		})
	}
	// The argument of each use(…) in assigned, and the kind of count.
	var uses []*ast.CallExpr
	ast.Inspect(c.funcs["assigned"][0], func(n ast.Node) bool {
		if call, ok := n.(*ast.CallExpr); ok && call.Fun.(*ast.Ident).Name == "use" {
			uses = append(uses, call)
		}
		return true
	})
	for i, want := range []string{"good other", "error", "good literal", "good other other", "error"} {
		values, err := c.values(uses[i].Args[0], c.funcs["assigned"][0], 0)
		got := strings.Join(values, " ")
		if err != nil {
			got = "error"
		}
		if got != want {
			t.Errorf("use %d (%s): %q (%v), want %q", i+1, c.src(uses[i].Args[0]), got, err, want)
		}
	}
	countFn := c.funcs["count"][0]
	values, err := c.values(countFn.Body.List[0].(*ast.ExprStmt).X.(*ast.CallExpr).Args[0], countFn, 0)
	if got := strings.Join(values, " "); err != nil || got != "good other" {
		t.Errorf("the parameter of count: %q (%v), want the arguments of its calls", got, err)
	}
}
