package browser

import (
	"net/http"
	"net/url"
	"strings"

	"golang.org/x/net/html"
)

// parseForms reads the forms and the title of an HTML page from the tree
// golang.org/x/net/html builds, as a browser would: controls are a form's
// fields and buttons in document order; a select's value is its last
// selected option, else its first enabled one, else its first; an
// option's value is its value attribute, else its text with whitespace
// collapsed. The title is the trimmed text of the first non-empty title
// element (not an svg's).
func parseForms(base *url.URL, body string) ([]Form, string) {
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		return nil, ""
	}
	var forms []Form
	var title string
	var cur *Form
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && n.Namespace == "" {
			switch n.Data {
			case "title":
				if title == "" {
					title = strings.TrimSpace(textOf(n))
				}
			case "form":
				action, _ := attr(n, "action")
				u, err := base.Parse(action)
				if err != nil {
					u = base
				}
				method, _ := attr(n, "method")
				m := http.MethodGet
				if strings.EqualFold(method, "post") {
					m = http.MethodPost
				}
				forms = append(forms, Form{Action: u, Method: m})
				cur = &forms[len(forms)-1]
				for c := n.FirstChild; c != nil; c = c.NextSibling {
					walk(c)
				}
				cur = nil
				return
			case "input", "button", "select", "textarea":
				if cur != nil {
					addControl(cur, n)
				}
				if n.Data != "button" {
					return
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return forms, title
}

func attr(n *html.Node, key string) (string, bool) {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val, true
		}
	}
	return "", false
}

// textOf is the text inside n.
func textOf(n *html.Node) string {
	if n.Type == html.TextNode {
		return n.Data
	}
	var b strings.Builder
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		b.WriteString(textOf(c))
	}
	return b.String()
}

func addControl(f *Form, n *html.Node) {
	name, _ := attr(n, "name")
	value, _ := attr(n, "value")
	typ, _ := attr(n, "type")
	typ = strings.ToLower(typ)
	_, checked := attr(n, "checked")
	_, disabled := attr(n, "disabled")
	switch n.Data {
	case "button":
		if typ == "" || typ == "submit" {
			f.Buttons = append(f.Buttons, Field{Name: name, Value: value, Type: "submit", Disabled: disabled})
		}
		return
	case "select":
		f.Fields = append(f.Fields, Field{Name: name, Value: selectValue(n), Type: "select", Disabled: disabled})
		return
	case "textarea":
		value = textOf(n)
		typ = "textarea"
	}
	if typ == "" {
		typ = "text"
	}
	if typ == "submit" {
		f.Buttons = append(f.Buttons, Field{Name: name, Value: value, Type: typ, Disabled: disabled})
		return
	}
	if (typ == "checkbox" || typ == "radio") && value == "" {
		value = "on"
	}
	f.Fields = append(f.Fields, Field{Name: name, Value: value, Type: typ, Checked: checked, Disabled: disabled})
}

// selectValue is what a select submits when nobody changes it.
func selectValue(sel *html.Node) string {
	var chosen, firstEnabled, first string
	var hasChosen, hasEnabled, hasFirst bool
	var visit func(n *html.Node, groupDisabled bool)
	visit = func(n *html.Node, groupDisabled bool) {
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			if c.Type != html.ElementNode {
				continue
			}
			switch c.Data {
			case "optgroup":
				_, off := attr(c, "disabled")
				visit(c, groupDisabled || off)
			case "option":
				v, ok := attr(c, "value")
				if !ok {
					v = strings.Join(strings.Fields(textOf(c)), " ")
				}
				_, off := attr(c, "disabled")
				if !hasFirst {
					first, hasFirst = v, true
				}
				if !hasEnabled && !off && !groupDisabled {
					firstEnabled, hasEnabled = v, true
				}
				if _, s := attr(c, "selected"); s {
					chosen, hasChosen = v, true
				}
			}
		}
	}
	visit(sel, false)
	switch {
	case hasChosen:
		return chosen
	case hasEnabled:
		return firstEnabled
	}
	return first
}
