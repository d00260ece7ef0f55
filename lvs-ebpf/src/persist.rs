//! Persistent services (`-p`, reference §4.1): a client network keeps its
//! real server through a template, without asking the scheduler again.

use lvs_common::{addr::Addr, FlowKey, Service, Template, TemplateKey, Verdict};

use crate::{family::Family, publication};

/// The template's real server while it lives, else a fresh choice that
/// becomes the template. Either way the template is re-armed.
#[inline(always)]
pub fn choose<P: Family>(
    service: &Service<P::Addr>,
    flow: &FlowKey<P::Addr>,
    now: u64,
) -> Result<u32, Verdict> {
    let net = flow.src().masked(&service.persist_mask());
    let key = TemplateKey::new(service.index, net);
    let templates = P::templates();
    let expires = now + service.persist_timeout_s as u64 * 1_000_000_000;
    if let Some(template) = templates.get_ptr_mut(key) {
        // SAFETY: the pointer comes from a successful map lookup.
        let template = unsafe { &mut *template };
        if now < template.expires_ns {
            template.expires_ns = expires;
            return Ok(template.real_index);
        }
    }
    let real_index = publication::choose::<P>(service, flow, now)?;
    templates
        .insert(key, Template::new(real_index, expires), 0)
        .map_err(|_| Verdict::DropTableFull)?;
    Ok(real_index)
}
